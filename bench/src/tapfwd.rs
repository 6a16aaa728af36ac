//! A userspace frame forwarder between two taps: the best a userspace device can do on
//! this machine, as a baseline for the virtio-net path (issue 9).
//!
//! Two modes: plain (IFF_TAP | IFF_NO_PI, one Ethernet frame per read, at most the
//! taps' MTU) and vnet (IFF_VNET_HDR with a 12-byte header and
//! TUNSETOFFLOAD(CSUM | TSO4 | TSO6 | TSO_ECN): the kernel hands over TCP segments of
//! up to 64 KiB with their GSO header, and the other tap takes them as they are, the
//! way the virtio-net device passes them to a guest). One thread moves frames both
//! ways: it drains each side until EAGAIN, then sleeps in poll() (or, with `spin`,
//! polls without sleeping).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// The vnet header: virtio_net_hdr_v1, as the virtio-net device uses it.
pub const VNET_HDR_LEN: usize = 12;
/// The largest frame with TSO (64 KiB IP packet and Ethernet header) and its header.
pub const BUF_LEN: usize = VNET_HDR_LEN + 65550;

/// Opens the existing tap `name` (non-blocking); with `vnet`, with a vnet header and
/// every TCP offload.
pub fn open_tap(name: &str, vnet: bool) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))?;
    // SAFETY: a valid NUL-terminated string for the call.
    if unsafe { libc::if_nametoindex(c_name.as_ptr()) } == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no tap device {name} in this network namespace"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = s as libc::c_char;
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet {
        flags |= libc::IFF_VNET_HDR;
    }
    // The flags fit a c_short (at most 0x5002).
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    let ioctl_err = |what: &str| {
        let e = io::Error::last_os_error();
        io::Error::new(e.kind(), format!("{name}: {what}: {e}"))
    };
    // SAFETY: TUNSETIFF reads and writes one ifreq, valid for the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(ioctl_err("TUNSETIFF"));
    }
    if vnet {
        let size = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int, valid for the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
            return Err(ioctl_err("TUNSETVNETHDRSZ"));
        }
        let offload = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                offload as libc::c_ulong,
            )
        } < 0
        {
            return Err(ioctl_err("TUNSETOFFLOAD"));
        }
    }
    Ok(file)
}

/// Frames and bytes moved in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub frames: u64,
    pub bytes: u64,
    /// Frames the other side refused (counted, never retried).
    pub dropped: u64,
}

/// Moves every frame waiting on `from` to `to`; returns how many it moved.
fn drain(from: RawFd, to: RawFd, buf: &mut [u8], flow: &mut Flow) -> io::Result<u64> {
    let mut moved = 0;
    loop {
        // SAFETY: `buf` is valid for writes of its length for the call.
        let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(moved),
                io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        // n > 0 and at most buf.len().
        let len = n as usize;
        // SAFETY: the first `len` bytes of `buf` were just read.
        let w = unsafe { libc::write(to, buf.as_ptr().cast(), len) };
        if w < 0 {
            flow.dropped += 1;
        } else {
            flow.frames += 1;
            flow.bytes += len as u64;
        }
        moved += 1;
    }
}

/// Forwards frames between `a` and `b` until `stop` is set (checked at least every
/// 100 ms) or a side fails; returns (a -> b, b -> a).
pub fn forward(a: RawFd, b: RawFd, spin: bool, stop: &AtomicBool) -> io::Result<(Flow, Flow)> {
    let mut buf = vec![0u8; BUF_LEN];
    let (mut ab, mut ba) = (Flow::default(), Flow::default());
    while !stop.load(Ordering::Relaxed) {
        let moved = drain(a, b, &mut buf, &mut ab)? + drain(b, a, &mut buf, &mut ba)?;
        if moved > 0 || spin {
            continue;
        }
        let mut fds = [a, b].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: `fds` holds two valid pollfds for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
    }
    Ok((ab, ba))
}

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;

    fn pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two descriptors.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: fresh descriptors nobody else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn send(fd: &OwnedFd, msg: &[u8]) {
        // SAFETY: `msg` is valid for reads for the call.
        let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        assert_eq!(n, msg.len() as isize);
    }

    fn recv(fd: &OwnedFd) -> Vec<u8> {
        let mut buf = vec![0u8; BUF_LEN + 1];
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the bound only turns a hang into a failure.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 20_000) }, 1);
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        buf.truncate(n as usize);
        buf
    }

    #[test]
    fn frames_cross_both_ways_whole() {
        let (a, a_peer) = pair();
        let (b, b_peer) = pair();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let fwd = s.spawn(|| forward(a.as_raw_fd(), b.as_raw_fd(), false, &stop));
            let big: Vec<u8> = (0..BUF_LEN).map(|i| i as u8).collect();
            send(&a_peer, &big);
            send(&a_peer, b"small");
            send(&b_peer, b"back");
            assert_eq!(recv(&b_peer), big);
            assert_eq!(recv(&b_peer), b"small");
            assert_eq!(recv(&a_peer), b"back");
            stop.store(true, Ordering::Relaxed);
            let (ab, ba) = fwd.join().unwrap().unwrap();
            assert_eq!(
                ab,
                Flow {
                    frames: 2,
                    bytes: BUF_LEN as u64 + 5,
                    dropped: 0
                }
            );
            assert_eq!(
                ba,
                Flow {
                    frames: 1,
                    bytes: 4,
                    dropped: 0
                }
            );
        });
    }

    #[test]
    fn taps_open_plain_and_with_offloads_in_a_private_namespace() {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: unshare only changes this thread's namespaces.
                assert_eq!(
                    unsafe { libc::unshare(libc::CLONE_NEWNET) },
                    0,
                    "needs root"
                );
                let e = open_tap("flxa", true).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::NotFound);
                for name in ["flxa", "flxb"] {
                    let ok = std::process::Command::new("ip")
                        .args(["tuntap", "add", "dev", name, "mode", "tap"])
                        .status()
                        .expect("iproute2's ip");
                    assert!(ok.success());
                }
                let a = open_tap("flxa", true).unwrap();
                let b = open_tap("flxb", false).unwrap();
                drop((a, b));
            })
            .join()
            .unwrap();
        });
    }
}
