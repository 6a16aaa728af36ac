//! What the device needs from the host side of the link: a non-blocking descriptor that
//! takes and gives whole frames, each preceded by a 12-byte virtio_net_hdr_v1, through
//! one `readv`/`writev` per frame. A [`Tap`](super::tap::Tap) is one; so is a
//! [`SocketBackend`] (one end of a SOCK_SEQPACKET socket pair), which tests and fuzz
//! targets use to play the host side without a network namespace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering};

/// The host side of the link (see the module docs). Reads and writes go straight to
/// the descriptor, from the device thread.
pub trait Backend: AsRawFd + Send + Sync + 'static {
    /// Tells the host which offloads the guest accepted: frames may then carry a
    /// partial checksum (`csum`, GUEST_CSUM) and be TCP segments of up to 64 KiB
    /// (`tso4`, GUEST_TSO4).
    fn set_offload(&self, csum: bool, tso4: bool) -> io::Result<()>;
}

/// One end of a non-blocking SOCK_SEQPACKET Unix socket pair: every message is one
/// frame with its header, like a tap with a vnet header.
#[derive(Debug)]
pub struct SocketBackend {
    fd: OwnedFd,
    /// The last offloads set: bit 0 csum, bit 1 tso4, bit 7 "set at all".
    offload: AtomicU8,
}

impl SocketBackend {
    /// The device's end and the peer's (both non-blocking, close-on-exec).
    pub fn pair() -> io::Result<(SocketBackend, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socketpair succeeded: both are fresh descriptors nobody else owns.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((
            SocketBackend {
                fd: ours,
                offload: AtomicU8::new(0),
            },
            theirs,
        ))
    }

    /// The offloads last set, as (csum, tso4), if any were.
    pub fn offload(&self) -> Option<(bool, bool)> {
        let v = self.offload.load(Ordering::Acquire);
        (v & 0x80 != 0).then_some((v & 1 != 0, v & 2 != 0))
    }
}

impl AsRawFd for SocketBackend {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Backend for SocketBackend {
    fn set_offload(&self, csum: bool, tso4: bool) -> io::Result<()> {
        self.offload.store(
            0x80 | u8::from(csum) | (u8::from(tso4) << 1),
            Ordering::Release,
        );
        Ok(())
    }
}
