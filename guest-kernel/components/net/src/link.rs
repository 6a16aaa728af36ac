//! smoltcp's [`Device`](phy::Device) over the netdev driver: [`Link::local`] when the
//! driver shares the compartment (received frames are handed to the stack in place:
//! the receive buffer is the device's, in private memory, and ours until released;
//! frames to send are built in the driver's transmit buffers; no copy), or
//! [`Link::remote`] through the `nic` gate interface (receive buffers in the heap of
//! the channel with netdev's compartment, copied out once before parsing, since that
//! compartment could change them; frames to send cross in a shared buffer).

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::{Ordering, fence};

use flexos_kernel::gate::{self, GateRouter};
use flexos_kernel::rpc::{SharedBuf, SharedBytes};
use flexos_netdev::driver::{RX_BUF, TX_MTU};
use flexos_netdev::frame::{HDR_LEN, accept};
use flexos_netdev::{CTRL_LEN, CTRL_WAITING, NetDevice, Netdev, nic};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The driver in another compartment.
pub struct Remote {
    nic: nic::Client<'static, Netdev, GateRouter>,
    rx: Vec<SharedBuf>,
    /// Private copy of the frame being processed.
    scratch: Vec<u8>,
    /// The receive buffer to give back with the next `rx_next`.
    release: i64,
    tx_buf: SharedBuf,
    tx_scratch: Vec<u8>,
    ctrl: SharedBytes<'static>,
    netdev: u32,
    waiting: bool,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
}

enum Backend {
    Local(NetDevice),
    Remote(Remote),
}

/// The device as smoltcp sees it.
pub struct Link {
    inner: RefCell<Backend>,
}

/// Counters of a link: frames and bytes received, frames sent.
pub struct LinkStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
}

impl Link {
    pub fn local(nic: NetDevice) -> Link {
        Link {
            inner: RefCell::new(Backend::Local(nic)),
        }
    }

    /// Attaches to the netdev component `component` in compartment `netdev`; returns
    /// the link and the MAC address, or a message.
    pub fn remote(
        server: &'static nic::Server<Netdev>,
        component: u16,
        netdev: u32,
    ) -> Result<(Link, [u8; 6]), &'static str> {
        let client = nic::Client::new(gate::router(), component, &server.0);
        let ctrl_buf = gate::shared_alloc(component, CTRL_LEN)
            .ok_or("no shared memory for the control block")?;
        let ctrl = gate::bytes(ctrl_buf).map_err(|_| "bad control block")?;
        ctrl.store_u64(CTRL_WAITING, 0);
        let count = client
            .attach(ctrl_buf)
            .map_err(|_| "the netdev component does not answer")?;
        if count <= 0 {
            return Err("the netdev component has no usable device (see its message)");
        }
        let mut rx = Vec::new();
        for id in 0..count as u16 {
            let buf = client
                .rx_buffer(id)
                .map_err(|_| "a receive buffer handle was refused")?;
            if (buf.len() as usize) < RX_BUF {
                return Err("a receive buffer is too small");
            }
            rx.push(buf);
        }
        let mac = client
            .mac()
            .map_err(|_| "the netdev component does not answer")?;
        let tx_buf =
            gate::shared_alloc(component, TX_MTU).ok_or("no shared memory for transmit frames")?;
        let b = mac.to_be_bytes();
        let link = Link {
            inner: RefCell::new(Backend::Remote(Remote {
                nic: client,
                rx,
                scratch: vec![0; RX_BUF],
                release: -1,
                tx_buf,
                tx_scratch: vec![0; TX_MTU],
                ctrl,
                netdev,
                waiting: false,
                rx_frames: 0,
                rx_bytes: 0,
                tx_frames: 0,
            })),
        };
        Ok((link, [b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    pub fn stats(&self) -> LinkStats {
        match &*self.inner.borrow() {
            Backend::Local(n) => LinkStats {
                rx_frames: n.rx_frames,
                rx_bytes: n.rx_bytes,
                tx_frames: n.tx_frames,
            },
            Backend::Remote(r) => LinkStats {
                rx_frames: r.rx_frames,
                rx_bytes: r.rx_bytes,
                tx_frames: r.tx_frames,
            },
        }
    }

    /// Device kicks (a gate call when the driver is elsewhere).
    pub fn kicks(&self) -> u64 {
        match &*self.inner.borrow() {
            Backend::Local(n) => n.kicks,
            Backend::Remote(r) => r.nic.stat(3).unwrap_or(0).max(0) as u64,
        }
    }

    /// After waking: no device notifications while we poll.
    pub fn disarm(&self) {
        match &mut *self.inner.borrow_mut() {
            Backend::Local(n) => n.disarm(),
            Backend::Remote(r) => {
                if r.waiting {
                    r.ctrl.store_u64(CTRL_WAITING, 0);
                    r.waiting = false;
                }
            }
        }
    }

    /// Before sleeping: asks for a wake-up on the next frame; `true` if one is
    /// already waiting (do not sleep).
    pub fn arm(&self) -> bool {
        match &mut *self.inner.borrow_mut() {
            Backend::Local(n) => n.arm(),
            Backend::Remote(r) => {
                // netdev sees `waiting` (and wakes us once a frame is there) or we see
                // it asleep and ring it, so that it looks.
                r.ctrl.store_u64(CTRL_WAITING, 1);
                r.waiting = true;
                fence(Ordering::SeqCst);
                gate::endpoint().wake(r.netdev);
                false
            }
        }
    }
}

pub struct Rx<'a> {
    link: &'a RefCell<Backend>,
    id: u16,
    ptr: *const u8,
    len: usize,
}

pub struct Tx<'a> {
    link: &'a RefCell<Backend>,
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        // SAFETY: `ptr .. ptr + len` is either a receive buffer the device finished
        // writing (out of the used ring, acquire), which it does not touch until we
        // post it again below, or the remote link's private scratch copy, which the
        // next `receive` overwrites only after this token is consumed (the token
        // borrows the link). Neither is aliased mutably meanwhile.
        let frame = unsafe { core::slice::from_raw_parts(self.ptr, self.len) };
        let r = f(frame);
        match &mut *self.link.borrow_mut() {
            Backend::Local(n) => n.rx_release(self.id),
            Backend::Remote(remote) => remote.release = i64::from(self.id),
        }
        r
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut backend = self.link.borrow_mut();
        match &mut *backend {
            Backend::Local(nic) => match nic.tx_alloc() {
                Some(id) if len <= TX_MTU => {
                    let r = f(&mut nic.tx_frame(id)[..len]);
                    nic.tx_send(id, len);
                    r
                }
                // No transmit buffer (the device is behind) or an oversized frame:
                // drop it, as a full NIC queue would; TCP retransmits.
                _ => f(&mut vec![0u8; len]),
            },
            Backend::Remote(remote) if len <= TX_MTU => {
                let r = f(&mut remote.tx_scratch[..len]);
                let sent = gate::bytes(remote.tx_buf)
                    .ok()
                    .and_then(|b| b.copy_in(0, &remote.tx_scratch[..len]).ok())
                    .and_then(|()| remote.tx_buf.slice(0, len as u32))
                    .map(|frame| remote.nic.tx(frame));
                if matches!(sent, Some(Ok(0))) {
                    remote.tx_frames += 1;
                }
                r
            }
            Backend::Remote(_) => f(&mut vec![0u8; len]),
        }
    }
}

impl Remote {
    /// The next received frame, copied into `scratch`: (buffer id, frame length).
    fn next(&mut self) -> Option<(u16, usize)> {
        loop {
            let release = core::mem::replace(&mut self.release, -1);
            let r = self.nic.rx_next(release).ok()?;
            if r < 0 {
                return None;
            }
            let (id, len) = ((r >> 32) as u16, (r & 0xffff_ffff) as usize);
            let Some(&buf) = self.rx.get(usize::from(id)) else {
                continue;
            };
            let len = len.min(buf.len() as usize).min(RX_BUF);
            self.release = i64::from(id);
            let copied = gate::bytes(buf)
                .ok()
                .is_some_and(|b| b.copy_out(0, &mut self.scratch[..len]).is_ok());
            if copied && len > HDR_LEN && accept(&self.scratch[..len]) {
                self.rx_frames += 1;
                self.rx_bytes += len as u64;
                return Some((id, len));
            }
        }
    }
}

impl phy::Device for Link {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let mut backend = self.inner.borrow_mut();
        let (id, ptr, len) = match &mut *backend {
            Backend::Local(nic) => loop {
                let (id, len) = nic.rx_pop()?;
                let buf = nic.rx_buffer(id)?;
                // SAFETY: as in `Rx::consume`: a buffer the device has finished with.
                let whole = unsafe { core::slice::from_raw_parts(buf.as_ptr(), len) };
                if len > HDR_LEN && accept(whole) {
                    break (id, buf.as_ptr().cast_const(), len);
                }
                nic.rx_release(id);
            },
            Backend::Remote(remote) => {
                let (id, len) = remote.next()?;
                (id, remote.scratch.as_ptr(), len)
            }
        };
        drop(backend);
        Some((
            Rx {
                link: &self.inner,
                id,
                // SAFETY: len > HDR_LEN, inside the buffer.
                ptr: unsafe { ptr.add(HDR_LEN) },
                len: len - HDR_LEN,
            },
            Tx { link: &self.inner },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx { link: &self.inner })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = TX_MTU;
        // The driver checks the frames the device does not vouch for (frame::accept);
        // the others carry partial TCP checksums the stack must not verify. Sent
        // frames get full checksums (no offload towards the device).
        let mut sums = ChecksumCapabilities::ignored();
        sums.ipv4 = Checksum::Tx;
        sums.tcp = Checksum::Tx;
        sums.udp = Checksum::Tx;
        sums.icmpv4 = Checksum::Both;
        caps.checksum = sums;
        caps
    }
}
