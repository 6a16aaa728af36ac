//! smoltcp's [`Device`](phy::Device) over the netdev driver: [`Link::local`] when the
//! driver shares the compartment (received frames are handed to the stack in place:
//! the receive buffer is the device's, in private memory, and ours until released;
//! frames to send are built in the driver's transmit buffers; no copy), or
//! [`Link::remote`] through the `nic` gate interface (receive buffers in the heap of
//! the channel with netdev's compartment, copied out once before parsing, since that
//! compartment could change them; frames to send cross in a shared buffer).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::{Ordering, fence};

use flexos_kernel::gate::{self, GateRouter};
use flexos_kernel::rpc::{SharedBuf, SharedBytes};
use flexos_netdev::driver::{RX_BUF, TSO_MTU, TX_MTU};
use flexos_netdev::frame::{HDR_LEN, accept, raise_syn_mss, tx_header};
use flexos_netdev::relay::{
    CTRL_LEN, CTRL_RECEIVED, CTRL_RELEASED, CTRL_SEND, CTRL_SENT, CTRL_WAITING, Consumer, Producer,
    RELAY_ENTRIES, TX_SLOT, TX_SLOTS,
};
use flexos_netdev::{NetDevice, Netdev, nic};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::lockout::{is_syn, payload_flow};

/// The driver in another compartment, through the relay rings of a control block.
pub struct Remote {
    nic: nic::Client<'static, Netdev, GateRouter>,
    rx: Vec<SharedBuf>,
    /// Private copy of the frame being processed.
    scratch: Vec<u8>,
    /// Where a frame to send is built (smoltcp sends replies while the received
    /// frame, in `scratch`, is still borrowed).
    tx_scratch: Vec<u8>,
    ctrl: SharedBytes<'static>,
    received: Consumer<'static>,
    released: Producer<'static>,
    send: Producer<'static>,
    sent: Consumer<'static>,
    tx_area: SharedBytes<'static>,
    /// Free transmit slots.
    tx_free: Vec<u64>,
    netdev: u32,
    waiting: bool,
    /// A relay ring was garbled: no more frames.
    broken: bool,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
}

enum Backend {
    Local(NetDevice),
    Remote(Box<Remote>),
}

/// Peers' MSS, as their SYNs asked, kept at most: with TSO the stack is told every
/// peer takes 64 KiB segments and the device cuts them to this size.
const PEERS: usize = 64;
/// The MSS the stack is told each peer asked for, with TSO: the largest TCP payload
/// of a 64 KiB IP packet.
const TSO_MSS: u16 = (TSO_MTU - 54) as u16;
/// The MSS assumed for a peer no longer (or never) in the table: a 1500-byte MTU's.
const DEFAULT_MSS: u16 = (TX_MTU - 54) as u16;

/// Each peer's MSS (address, port, MSS), newest replacing the oldest.
#[derive(Default)]
struct Peers {
    table: Vec<([u8; 4], u16, u16)>,
    next: usize,
}

impl Peers {
    fn remember(&mut self, addr: [u8; 4], port: u16, mss: u16) {
        if let Some(e) = self.table.iter_mut().find(|e| e.0 == addr && e.1 == port) {
            e.2 = mss;
        } else if self.table.len() < PEERS {
            self.table.push((addr, port, mss));
        } else {
            self.table[self.next] = (addr, port, mss);
            self.next = (self.next + 1) % PEERS;
        }
    }

    /// The MSS of the peer an outgoing Ethernet `frame` goes to.
    fn mss_to(&self, frame: &[u8]) -> u16 {
        let (Some(ip), Some(&vihl)) = (frame.get(30..34), frame.get(14)) else {
            return DEFAULT_MSS;
        };
        let tcp = 14 + usize::from(vihl & 0xf) * 4;
        let Some(port) = frame.get(tcp + 2..tcp + 4) else {
            return DEFAULT_MSS;
        };
        let port = u16::from_be_bytes([port[0], port[1]]);
        self.table
            .iter()
            .find(|e| e.0 == ip && e.1 == port)
            .map_or(DEFAULT_MSS, |e| e.2)
    }
}

/// The device as smoltcp sees it.
pub struct Link {
    inner: RefCell<Backend>,
    /// The device takes 64 KiB TCP segments and completes their checksums (CSUM and
    /// HOST_TSO4; only with the driver in this compartment).
    tso: bool,
    peers: RefCell<Peers>,
    /// A connection request (SYN) was handed to the stack: no more frames until the
    /// stack's ports have been tended ([`Link::resume`]). smoltcp answers a SYN that
    /// finds no listening socket with a RST, and it reads every waiting frame in one
    /// poll: without this pause, a burst of SYNs would use up the listeners and the
    /// rest (a real client among them) be refused.
    paused: bool,
    /// The flow whose payload this poll round has handed to the stack. A frame of
    /// another flow is held back for the next round: smoltcp reads every waiting
    /// frame in one poll and the stack then fills the rings in connection order, so
    /// without this the app would see two clients' requests of one round as if they
    /// came at once, and serve them in descriptor order (Redis's tests send a command
    /// on one connection, then one on another, and expect them served in that order).
    flow: Option<u64>,
    /// That frame: (buffer id, bytes, length), handed out first next round.
    held: Option<(u16, *const u8, usize)>,
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
            tso: nic.tso(),
            peers: RefCell::new(Peers::default()),
            inner: RefCell::new(Backend::Local(nic)),
            paused: false,
            flow: None,
            held: None,
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
            .ok_or("no shared memory for the relay rings")?;
        let tx_buf = gate::shared_alloc(component, TX_SLOTS * TX_SLOT)
            .ok_or("no shared memory for transmit frames")?;
        let ctrl = gate::bytes(ctrl_buf).map_err(|_| "bad control block")?;
        let tx_area = gate::bytes(tx_buf).map_err(|_| "bad transmit area")?;
        ctrl.fill(0);
        let rings = (
            Consumer::new(ctrl, CTRL_RECEIVED, RELAY_ENTRIES),
            Producer::new(ctrl, CTRL_RELEASED, RELAY_ENTRIES),
            Producer::new(ctrl, CTRL_SEND, RELAY_ENTRIES),
            Consumer::new(ctrl, CTRL_SENT, RELAY_ENTRIES),
        );
        let (Ok(received), Ok(released), Ok(send), Ok(sent)) = rings else {
            return Err("bad relay ring layout");
        };
        let count = client
            .attach(ctrl_buf, tx_buf)
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
        let b = mac.to_be_bytes();
        let link = Link {
            tso: false,
            peers: RefCell::new(Peers::default()),
            paused: false,
            flow: None,
            held: None,
            inner: RefCell::new(Backend::Remote(Box::new(Remote {
                nic: client,
                rx,
                scratch: vec![0; RX_BUF],
                tx_scratch: vec![0; TX_MTU],
                ctrl,
                received,
                released,
                send,
                sent,
                tx_area,
                tx_free: (0..TX_SLOTS as u64).collect(),
                netdev,
                waiting: false,
                broken: false,
                rx_frames: 0,
                rx_bytes: 0,
                tx_frames: 0,
            }))),
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

    /// Does the device take 64 KiB TCP segments (CSUM and HOST_TSO4)?
    pub fn tso(&self) -> bool {
        self.tso
    }

    /// Starts a new poll round: hands frames to the stack again after a SYN or
    /// another flow's frame paused it; returns whether one had.
    pub fn resume(&mut self) -> bool {
        self.flow = None;
        core::mem::take(&mut self.paused)
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
                // netdev sees `waiting` after it pushes a frame (and wakes us), or we
                // see the frame here.
                r.ctrl.store_u64(CTRL_WAITING, 1);
                r.waiting = true;
                fence(Ordering::SeqCst);
                !r.broken && r.received.pending()
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
    peers: &'a RefCell<Peers>,
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
            // Given back when it was copied.
            Backend::Remote(_) => {}
        }
        r
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut backend = self.link.borrow_mut();
        match &mut *backend {
            Backend::Local(nic) => match nic.tx_alloc() {
                Some(id) if len <= nic.tx_mtu() => {
                    let r = f(&mut nic.tx_frame(id)[..len]);
                    if nic.tso() {
                        let frame = &mut nic.tx_frame(id)[..len];
                        let mss = self.peers.borrow().mss_to(frame);
                        let hdr = tx_header(frame, mss);
                        nic.tx_send_with(id, len, hdr);
                    } else {
                        nic.tx_send(id, len);
                    }
                    r
                }
                // No transmit buffer (the device is behind) or an oversized frame:
                // drop it, as a full NIC queue would; TCP retransmits.
                _ => f(&mut vec![0u8; len]),
            },
            Backend::Remote(remote) if len <= TX_MTU => match remote.tx_slot() {
                Some(slot) => {
                    let r = f(&mut remote.tx_scratch[..len]);
                    let at = slot as usize * TX_SLOT;
                    let pushed = remote
                        .tx_area
                        .copy_in(at, &remote.tx_scratch[..len])
                        .is_ok()
                        && remote.send.push(slot << 32 | len as u64) == Ok(true);
                    if pushed {
                        remote.tx_frames += 1;
                        gate::endpoint().wake(remote.netdev);
                    } else {
                        remote.tx_free.push(slot);
                    }
                    r
                }
                None => f(&mut vec![0u8; len]),
            },
            Backend::Remote(_) => f(&mut vec![0u8; len]),
        }
    }
}

impl Remote {
    /// Is a transmit slot free?
    fn tx_ready(&mut self) -> bool {
        match self.tx_slot() {
            Some(slot) => {
                self.tx_free.push(slot);
                true
            }
            None => false,
        }
    }

    /// A free transmit slot (collecting the ones netdev has sent).
    fn tx_slot(&mut self) -> Option<u64> {
        while let Ok(Some(slot)) = self.sent.pop() {
            if slot < TX_SLOTS as u64 && !self.tx_free.contains(&slot) {
                self.tx_free.push(slot);
            }
        }
        self.tx_free.pop()
    }

    /// The next received frame, copied into `scratch` (its buffer given back at
    /// once): its length, header included.
    fn next(&mut self) -> Option<usize> {
        while !self.broken {
            let entry = match self.received.pop() {
                Ok(Some(e)) => e,
                Ok(None) => return None,
                Err(_) => {
                    self.broken = true;
                    return None;
                }
            };
            let (id, len) = ((entry >> 32) as u16, (entry & 0xffff_ffff) as usize);
            let Some(&buf) = self.rx.get(usize::from(id)) else {
                continue;
            };
            let len = len.min(buf.len() as usize).min(RX_BUF);
            let copied = gate::bytes(buf)
                .ok()
                .is_some_and(|b| b.copy_out(0, &mut self.scratch[..len]).is_ok());
            if self.released.push(u64::from(id)) != Ok(true) {
                self.broken = true;
            }
            gate::endpoint().wake(self.netdev);
            if copied && len > HDR_LEN && accept(&self.scratch[..len]) {
                self.rx_frames += 1;
                self.rx_bytes += len as u64;
                return Some(len);
            }
        }
        None
    }
}

impl phy::Device for Link {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        if self.paused {
            return None;
        }
        let mut backend = self.inner.borrow_mut();
        let (id, ptr, len) = match self.held.take() {
            Some(frame) => frame,
            None => match &mut *backend {
                Backend::Local(nic) => loop {
                    let (id, len) = nic.rx_pop()?;
                    let buf = nic.rx_buffer(id)?;
                    // SAFETY: as in `Rx::consume`: a buffer the device has finished with.
                    let whole = unsafe { core::slice::from_raw_parts(buf.as_ptr(), len) };
                    if len > HDR_LEN && accept(whole) {
                        if self.tso {
                            // SAFETY: the same buffer, ours until released (the
                            // device does not write it meanwhile); `whole` is not
                            // used after this.
                            let frame = unsafe {
                                core::slice::from_raw_parts_mut(
                                    buf.as_ptr().add(HDR_LEN),
                                    len - HDR_LEN,
                                )
                            };
                            // Checked above (or vouched for), and the stack does not
                            // verify TCP sums: the option can change in place.
                            if let Some((addr, port, mss)) = raise_syn_mss(frame, TSO_MSS) {
                                self.peers.borrow_mut().remember(addr, port, mss);
                            }
                        }
                        break (id, buf.as_ptr().cast_const(), len);
                    }
                    nic.rx_release(id);
                },
                Backend::Remote(remote) => {
                    let len = remote.next()?;
                    (0, remote.scratch.as_ptr(), len)
                }
            },
        };
        drop(backend);
        // SAFETY: len > HDR_LEN, inside the buffer (or the scratch copy, which the
        // next `Remote::next` alone overwrites: not before a held frame is consumed).
        // As in `Rx::consume`: a buffer the device has finished with, not written
        // while we look (a few header bytes).
        let frame = unsafe { core::slice::from_raw_parts(ptr.add(HDR_LEN), len - HDR_LEN) };
        if let Some(flow) = payload_flow(frame) {
            match self.flow {
                Some(current) if current != flow => {
                    self.held = Some((id, ptr, len));
                    self.paused = true;
                    return None;
                }
                _ => self.flow = Some(flow),
            }
        }
        self.paused = is_syn(frame);
        // SAFETY: len > HDR_LEN, inside the buffer.
        let ptr = unsafe { ptr.add(HDR_LEN) };
        let len = len - HDR_LEN;
        Some((
            Rx {
                link: &self.inner,
                id,
                ptr,
                len,
            },
            Tx {
                link: &self.inner,
                peers: &self.peers,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        // No free transmit buffer: the stack keeps the data and tries again next
        // round (building the frame only to drop it would cost a retransmission).
        let ready = match &mut *self.inner.borrow_mut() {
            Backend::Local(nic) => nic.tx_ready(),
            Backend::Remote(remote) => remote.tx_ready(),
        };
        ready.then_some(Tx {
            link: &self.inner,
            peers: &self.peers,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = if self.tso { TSO_MTU } else { TX_MTU };
        // The driver checks the frames the device does not vouch for (frame::accept);
        // the others carry partial TCP checksums the stack must not verify. Sent
        // frames get full checksums (no offload towards the device).
        let mut sums = ChecksumCapabilities::ignored();
        sums.ipv4 = Checksum::Tx;
        // With TSO the device completes TCP sums (frame::tx_header).
        sums.tcp = if self.tso {
            Checksum::None
        } else {
            Checksum::Tx
        };
        sums.udp = Checksum::Tx;
        sums.icmpv4 = Checksum::Both;
        caps.checksum = sums;
        caps
    }
}
