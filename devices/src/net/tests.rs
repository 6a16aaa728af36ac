//! virtio-net through the transport as a guest drives it, with a socket pair as the
//! host side: frames both ways, frames waiting for buffers, notifications, and hostile
//! drivers (every bad chain ends in DEVICE_NEEDS_RESET and a report, never a panic or a
//! byte outside the device's memory).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use virtio_bindings::bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::bindings::virtio_mmio::*;
use virtio_bindings::bindings::virtio_net::{
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_MAC,
};
use virtio_bindings::bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VRING_DESC_F_NEXT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;
use crate::testing::{memory, read_reg, write_reg, MEM_END, MEM_START, R, W};
use crate::virtio::mmio::MmioTransport;
use crate::virtio::GuestMemory;

const TSO: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_NET_F_MAC)
    | (1 << VIRTIO_NET_F_GUEST_CSUM)
    | (1 << VIRTIO_NET_F_GUEST_TSO4)
    | (1 << VIRTIO_RING_F_EVENT_IDX);
const PLAIN: u64 = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_NET_F_MAC);
const BIG: u32 = (VNET_HDR_LEN + MAX_FRAME_LEN) as u32;
const SMALL: u32 = (VNET_HDR_LEN + ETH_FRAME_LEN) as u32;

/// Buffers: two receive buffers of the largest size, then transmit data.
const RX0: u64 = MEM_START + 0x6000;
const RX1: u64 = MEM_START + 0x17000;
const TXB: u64 = MEM_START + 0x28000;

/// One split queue laid out in guest memory, driven like a guest driver does.
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    next_desc: u16,
    avail_idx: u16,
}

impl Ring {
    fn new(base: u64, size: u16) -> Ring {
        Ring {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            size,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    fn put_desc(&self, mem: &GuestMemory, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.desc + 16 * u64::from(index);
        mem.write_obj(addr.to_le(), GuestAddress(at)).unwrap();
        mem.write_obj(len.to_le(), GuestAddress(at + 8)).unwrap();
        mem.write_obj(flags.to_le(), GuestAddress(at + 12)).unwrap();
        mem.write_obj(next.to_le(), GuestAddress(at + 14)).unwrap();
    }

    fn post(&mut self, mem: &GuestMemory, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write_obj(head.to_le(), GuestAddress(self.avail + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(mem, self.avail_idx);
    }

    fn set_avail_idx(&self, mem: &GuestMemory, idx: u16) {
        mem.write_obj(idx.to_le(), GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Builds a chain of (addr, len, R or W) in fresh descriptors and posts it.
    fn chain(&mut self, mem: &GuestMemory, parts: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, dir)) in parts.iter().enumerate() {
            let index = (head + i as u16) % self.size;
            let last = i + 1 == parts.len();
            let flags = dir | if last { 0 } else { VRING_DESC_F_NEXT as u16 };
            self.put_desc(mem, index, addr, len, flags, (index + 1) % self.size);
        }
        self.next_desc = (head + parts.len() as u16) % self.size;
        self.post(mem, head);
        head
    }

    fn used_idx(&self, mem: &GuestMemory) -> u16 {
        u16::from_le(mem.read_obj(GuestAddress(self.used + 2)).unwrap())
    }

    /// Used element `n`: (head, len).
    fn used(&self, mem: &GuestMemory, n: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(n % self.size);
        let id: u32 = mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap();
        (u32::from_le(id), u32::from_le(len))
    }

    fn set_used_event(&self, mem: &GuestMemory, value: u16) {
        let at = self.avail + 4 + 2 * u64::from(self.size);
        mem.write_obj(value.to_le(), GuestAddress(at)).unwrap();
    }
}

type Reports = Arc<Mutex<Vec<String>>>;

struct Setup<B: Backend = SocketBackend> {
    mem: GuestMemory,
    t: MmioTransport<Net<B>>,
    rx: Ring,
    tx: Ring,
    /// The host side of the link.
    peer: OwnedFd,
    reports: Reports,
}

fn device(
    mem: &GuestMemory,
    execution: Execution,
) -> (MmioTransport<Net<SocketBackend>>, OwnedFd, Reports) {
    let (backend, peer) = SocketBackend::pair().unwrap();
    let reports: Reports = Arc::default();
    let sink = reports.clone();
    let net = Net::new(backend, [2, 0, 0, 0, 0, 9])
        .with_execution(execution)
        .with_poll(Duration::ZERO)
        .with_report(Arc::new(move |t: &str| sink.lock().unwrap().push(t.into())));
    (MmioTransport::new(net, mem.clone()).unwrap(), peer, reports)
}

/// A started device; `interrupt` is what the monitor would pass (the doorbell).
fn setup_with(features: u64, execution: Execution, interrupt: Option<&EventFd>) -> Setup {
    let mem = memory();
    let (mut t, peer, reports) = device(&mem, execution);
    if let Some(e) = interrupt {
        t.set_interrupt(e.try_clone().unwrap());
    }
    let mut s = Setup {
        mem,
        t,
        rx: Ring::new(MEM_START, 16),
        tx: Ring::new(MEM_START + 0x3000, 16),
        peer,
        reports,
    };
    s.init(features);
    s
}

fn setup(features: u64) -> Setup {
    setup_with(features, Execution::Inline, None)
}

impl<B: Backend> Setup<B> {
    fn init(&mut self, features: u64) {
        let t = &mut self.t;
        write_reg(t, VIRTIO_MMIO_STATUS, 0);
        write_reg(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        let drv = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
        write_reg(t, VIRTIO_MMIO_STATUS, drv);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
        write_reg(t, VIRTIO_MMIO_STATUS, drv | VIRTIO_CONFIG_S_FEATURES_OK);
        self.rx = Ring::new(self.rx.desc, 16);
        self.tx = Ring::new(self.tx.desc, 16);
        // Fresh rings: zeroed indexes and used_event.
        self.mem
            .write_slice(&[0u8; 0x6000], GuestAddress(MEM_START))
            .unwrap();
        for (sel, ring) in [(0u32, &self.rx), (1, &self.tx)] {
            write_reg(t, VIRTIO_MMIO_QUEUE_SEL, sel);
            write_reg(t, VIRTIO_MMIO_QUEUE_NUM, u32::from(ring.size));
            write_reg(t, VIRTIO_MMIO_QUEUE_DESC_LOW, ring.desc as u32);
            write_reg(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, ring.avail as u32);
            write_reg(t, VIRTIO_MMIO_QUEUE_USED_LOW, ring.used as u32);
            write_reg(t, VIRTIO_MMIO_QUEUE_READY, 1);
        }
        write_reg(
            t,
            VIRTIO_MMIO_STATUS,
            drv | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK,
        );
        assert!(
            t.is_activated(),
            "status {:#x}",
            read_reg(t, VIRTIO_MMIO_STATUS)
        );
    }

    fn kick(&mut self, queue: u16) {
        write_reg(&mut self.t, VIRTIO_MMIO_QUEUE_NOTIFY, u32::from(queue));
    }

    fn needs_reset(&mut self) -> bool {
        read_reg(&mut self.t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET != 0
    }

    /// The host sends `frame` (header included) on the socket pair.
    fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is valid for reads of its length for the call.
        let n = unsafe { libc::send(self.peer.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
    }

    /// What the host received, if anything (never blocks).
    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 128 * 1024];
        // SAFETY: `buf` is valid for writes of its length for the call.
        let n = unsafe {
            libc::recv(
                self.peer.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        (n >= 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn stats(&self) -> &NetStats {
        self.t.device().stats()
    }

    fn reports(&self) -> Vec<String> {
        self.reports.lock().unwrap().clone()
    }

    /// The device stopped on a driver bug that `needle` names, in one report.
    #[track_caller]
    fn assert_fault(&mut self, needle: &str) {
        assert!(self.needs_reset(), "no DEVICE_NEEDS_RESET");
        let reports = self.reports();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(reports[0].contains(needle), "{reports:?}");
        assert!(
            reports[0].ends_with("the device needs a reset"),
            "{reports:?}"
        );
        assert_eq!(self.stats().faults.load(Ordering::Relaxed), 1);
        assert_eq!(self.stats().fault().as_deref(), Some(reports[0].as_str()));
    }
}

/// A frame of `len` bytes after a header whose num_buffers is garbage.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f[10] = 0xee;
    f[11] = 0xee;
    f.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    f
}

/// The frame as the guest must see it: num_buffers = 1.
fn delivered(f: &[u8]) -> Vec<u8> {
    let mut f = f.to_vec();
    f[10] = 1;
    f[11] = 0;
    f
}

#[test]
fn identity_features_and_mac() {
    let (mut t, _peer, _) = device(&memory(), Execution::Inline);
    assert_eq!(read_reg(&mut t, VIRTIO_MMIO_DEVICE_ID), 1);
    write_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    let low = read_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES);
    write_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    let high = read_reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES);
    let offered = u64::from(low) | (u64::from(high) << 32);
    // VERSION_1, MAC, CSUM, GUEST_CSUM, GUEST_TSO4, EVENT_IDX; never MRG_RXBUF (15).
    assert_eq!(
        offered,
        (1 << 32) | (1 << 5) | (1 << 0) | (1 << 1) | (1 << 7) | (1 << 29)
    );
    for sel in [0, 1] {
        write_reg(&mut t, VIRTIO_MMIO_QUEUE_SEL, sel);
        assert_eq!(read_reg(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
    }
    let mut mac = [0u8; 8];
    t.read(0x100, &mut mac);
    assert_eq!(mac, [2, 0, 0, 0, 0, 9, 0, 0]);
    t.write(0x100, &[1, 1, 1, 1, 1, 1]);
    let mut mac = [0u8; 6];
    t.read(0x100, &mut mac);
    assert_eq!(mac, [2, 0, 0, 0, 0, 9], "read-only");
}

#[test]
fn frames_land_whole_in_guest_buffers_with_num_buffers_one() {
    let mut s = setup(TSO);
    assert_eq!(s.t.device().backend().offload(), Some((true, true)));
    // A chain with the header in its own descriptor, and one of a single piece.
    s.rx.chain(&s.mem.clone(), &[(RX0, 12, W), (RX0 + 12, BIG - 12, W)]);
    s.rx.chain(&s.mem.clone(), &[(RX1, BIG, W)]);
    let small = frame(60, 1);
    let largest = frame(MAX_FRAME_LEN, 2);
    s.send(&small);
    s.send(&largest);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 2);
    assert_eq!(s.rx.used(&s.mem, 0), (0, 72));
    assert_eq!(s.rx.used(&s.mem, 1), (2, BIG));
    assert_eq!(s.bytes(RX0, 72), delivered(&small));
    assert_eq!(s.bytes(RX1, BIG as usize), delivered(&largest));
    assert_eq!(s.stats().rx_frames.load(Ordering::Relaxed), 2);
    assert_eq!(
        s.stats().rx_bytes.load(Ordering::Relaxed),
        (60 + MAX_FRAME_LEN) as u64
    );
    assert!(!s.needs_reset());
    assert!(s.reports().is_empty());
}

#[test]
fn frames_wait_in_the_backend_until_the_guest_posts_buffers() {
    let mut s = setup(TSO);
    let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(100 + i, i as u8)).collect();
    for f in &frames {
        s.send(f);
    }
    // No buffer at all: nothing is taken, nothing is lost.
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 0);
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 1);
    assert_eq!(s.bytes(RX0, 112), delivered(&frames[0]));
    // The guest took it; it posts the same buffer and another one.
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    s.rx.chain(&s.mem.clone(), &[(RX1, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 3);
    assert_eq!(s.bytes(RX0, 113), delivered(&frames[1]));
    assert_eq!(s.bytes(RX1, 114), delivered(&frames[2]));
    assert_eq!(s.stats().rx_frames.load(Ordering::Relaxed), 3);
    assert_eq!(s.stats().rx_oversized.load(Ordering::Relaxed), 0);
    // A buffer and no frame: it stays available for the next one.
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 3);
    s.send(&frames[0]);
    s.t.device_mut().process();
    assert_eq!(s.rx.used_idx(&s.mem), 4);
}

#[test]
fn without_tso_a_receive_chain_needs_header_and_1514_bytes() {
    let mut s = setup(PLAIN);
    assert_eq!(s.t.device().backend().offload(), Some((false, false)));
    s.rx.chain(&s.mem.clone(), &[(RX0, SMALL, W)]);
    let f = frame(ETH_FRAME_LEN, 3);
    s.send(&f);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used(&s.mem, 0), (0, SMALL));
    assert_eq!(s.bytes(RX0, SMALL as usize), delivered(&f));
}

#[test]
fn a_frame_longer_than_negotiated_is_counted_and_reported_not_cut() {
    let mut s = setup(PLAIN);
    s.rx.chain(&s.mem.clone(), &[(RX0, SMALL, W)]);
    s.send(&frame(ETH_FRAME_LEN + 1, 4));
    let next = frame(50, 5);
    s.send(&next);
    s.kick(RX_QUEUE);
    // The long frame never reached the guest; the next one took the buffer.
    assert_eq!(s.rx.used_idx(&s.mem), 1);
    assert_eq!(s.rx.used(&s.mem, 0), (0, 62));
    assert_eq!(s.bytes(RX0, 62), delivered(&next));
    assert_eq!(s.stats().rx_oversized.load(Ordering::Relaxed), 1);
    let reports = s.reports();
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0].contains("dropped a 1527-byte frame"),
        "{reports:?}"
    );
    assert!(!s.needs_reset());
}

#[test]
fn transmitted_chains_reach_the_host_whole() {
    let mut s = setup(TSO);
    let f = frame(3000, 6);
    s.mem.write_slice(&f, GuestAddress(TXB)).unwrap();
    // Header and frame split unevenly over three descriptors.
    s.tx.chain(
        &s.mem.clone(),
        &[
            (TXB, 5, R),
            (TXB + 5, 1000, R),
            (TXB + 1005, 3007 - 1005, R),
        ],
    );
    s.tx.chain(&s.mem.clone(), &[(TXB, 12 + 60, R)]);
    s.kick(TX_QUEUE);
    assert_eq!(s.tx.used_idx(&s.mem), 2);
    assert_eq!(s.tx.used(&s.mem, 0), (0, 0));
    assert_eq!(s.tx.used(&s.mem, 1), (3, 0));
    assert_eq!(s.recv().unwrap(), &f[..3007]);
    assert_eq!(s.recv().unwrap(), &f[..72]);
    assert_eq!(s.recv(), None);
    assert_eq!(s.stats().tx_frames.load(Ordering::Relaxed), 2);
    assert_eq!(s.stats().tx_bytes.load(Ordering::Relaxed), 2995 + 60);
}

#[test]
fn used_buffers_ring_the_interrupt_only_when_used_event_asks() {
    let doorbell = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut s = setup_with(TSO, Execution::Inline, Some(&doorbell));
    // A driver that polls: used_event far ahead, no wake-up.
    s.rx.set_used_event(&s.mem, 100);
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    s.send(&frame(10, 0));
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 1);
    assert!(doorbell.read().is_err(), "woken though it asked not to be");
    // A driver about to sleep until the next frame: used_event = used index it has.
    s.rx.set_used_event(&s.mem, 1);
    s.rx.chain(&s.mem.clone(), &[(RX1, BIG, W)]);
    s.send(&frame(10, 0));
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 2);
    assert_eq!(doorbell.read().unwrap(), 1);
    // Transmit completions too.
    s.tx.set_used_event(&s.mem, 0);
    s.mem.write_slice(&frame(20, 0), GuestAddress(TXB)).unwrap();
    s.tx.chain(&s.mem.clone(), &[(TXB, 32, R)]);
    s.kick(TX_QUEUE);
    assert_eq!(doorbell.read().unwrap(), 1);
}

/// A hostile chain on `queue`: the device consumes it with length 0, needs a reset,
/// says why once, and moves nothing more until the driver resets it.
#[track_caller]
fn hostile(queue: u16, features: u64, parts: &[(u64, u32, u16)], needle: &str) {
    let mut s = setup(features);
    let mem = s.mem.clone();
    let ring = if queue == RX_QUEUE {
        &mut s.rx
    } else {
        &mut s.tx
    };
    ring.chain(&mem, parts);
    s.send(&frame(10, 0));
    s.kick(queue);
    let ring = if queue == RX_QUEUE { &s.rx } else { &s.tx };
    assert_eq!(ring.used_idx(&mem), 1);
    assert_eq!(ring.used(&mem, 0).1, 0);
    s.assert_fault(needle);
    // Stopped: a good chain is left alone, the frame stays in the backend.
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.stats().rx_frames.load(Ordering::Relaxed), 0);
    // After a reset the device works again, and the frame is still there.
    s.reports.lock().unwrap().clear();
    s.init(TSO);
    assert!(!s.needs_reset());
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used(&mem, 0), (0, 22));
    assert!(s.reports().is_empty());
}

#[test]
fn receive_buffers_outside_device_memory_need_reset() {
    // Below the device's memory: where the monitor's own area lies in a compartment.
    hostile(
        RX_QUEUE,
        TSO,
        &[(0x1000, BIG, W)],
        "outside the device's memory",
    );
    // Straddling its end.
    hostile(RX_QUEUE, TSO, &[(MEM_END - 100, BIG, W)], "0x4ff9c+65562");
    hostile(
        RX_QUEUE,
        TSO,
        &[(RX0, 12, W), (u64::MAX - 8, BIG, W)],
        "outside",
    );
}

#[test]
fn transmit_buffers_outside_device_memory_need_reset() {
    hostile(
        TX_QUEUE,
        TSO,
        &[(0x1000, 100, R)],
        "outside the device's memory",
    );
    hostile(TX_QUEUE, TSO, &[(TXB, 12, R), (MEM_END, 60, R)], "outside");
}

#[test]
fn oversized_lengths_need_reset() {
    hostile(RX_QUEUE, TSO, &[(RX0, u32::MAX, W)], "outside");
    // Two pieces whose sum passes 4 GiB: virtio-queue cuts the chain.
    hostile(
        RX_QUEUE,
        TSO,
        &[(RX0, u32::MAX, W), (RX1, u32::MAX, W)],
        "exceeds 4 GiB",
    );
    hostile(
        TX_QUEUE,
        TSO,
        &[(TXB, BIG + 1, R)],
        "transmit chain of 65563 bytes is longer",
    );
}

#[test]
fn wrong_directions_need_reset() {
    hostile(
        RX_QUEUE,
        TSO,
        &[(RX0, 12, R), (RX0 + 12, BIG, W)],
        "receive chain holds a device-readable descriptor",
    );
    hostile(
        TX_QUEUE,
        TSO,
        &[(TXB, 12, R), (TXB + 12, 60, W)],
        "transmit chain holds a device-writable descriptor",
    );
}

#[test]
fn tiny_receive_buffers_and_short_transmits_need_reset() {
    hostile(
        RX_QUEUE,
        TSO,
        &[(RX0, 1514, W)],
        "receive queue, chain 0: receive chain holds 1514 bytes; it must hold 65562",
    );
    hostile(
        RX_QUEUE,
        PLAIN,
        &[(RX0, SMALL - 1, W)],
        "holds 1525 bytes; it must hold 1526",
    );
    hostile(
        TX_QUEUE,
        TSO,
        &[(TXB, 11, R)],
        "shorter than the 12-byte header",
    );
}

#[test]
fn looping_chains_and_bad_indexes_need_reset() {
    // A descriptor that chains to itself.
    let mut s = setup(TSO);
    s.rx.put_desc(&s.mem, 0, RX0, 100, W | VRING_DESC_F_NEXT as u16, 0);
    s.rx.post(&s.mem.clone(), 0);
    s.send(&frame(10, 0));
    s.kick(RX_QUEUE);
    s.assert_fault("loops");
    assert_eq!(s.stats().rx_frames.load(Ordering::Relaxed), 0);

    // A next index past the table.
    let mut s = setup(TSO);
    s.tx.put_desc(&s.mem, 0, TXB, 12, VRING_DESC_F_NEXT as u16, 999);
    s.tx.post(&s.mem.clone(), 0);
    s.kick(TX_QUEUE);
    s.assert_fault("loops, leaves the descriptor table");

    // A head index past the table.
    let mut s = setup(TSO);
    s.tx.post(&s.mem.clone(), 17);
    s.kick(TX_QUEUE);
    assert!(s.needs_reset());

    // An available index more than a queue ahead of the device.
    let mut s = setup(TSO);
    s.rx.set_avail_idx(&s.mem, 100);
    s.kick(RX_QUEUE);
    s.assert_fault("receive queue: available ring");
}

#[test]
fn a_closed_backend_is_reported_once_and_transmits_are_counted() {
    let mut s = setup(TSO);
    s.rx.chain(&s.mem.clone(), &[(RX0, BIG, W)]);
    let (_, other) = SocketBackend::pair().unwrap();
    // Close the host side.
    s.peer = other;
    s.kick(RX_QUEUE);
    s.kick(RX_QUEUE);
    assert_eq!(s.rx.used_idx(&s.mem), 0);
    s.mem.write_slice(&frame(20, 0), GuestAddress(TXB)).unwrap();
    s.tx.chain(&s.mem.clone(), &[(TXB, 32, R)]);
    s.kick(TX_QUEUE);
    assert_eq!(s.tx.used(&s.mem, 0), (0, 0));
    assert_eq!(s.stats().tx_errors.load(Ordering::Relaxed), 1);
    assert!(!s.needs_reset());
    let reports = s.reports();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports[0].contains("backend closed"), "{reports:?}");
    assert!(
        reports[1].contains("refused a transmitted frame"),
        "{reports:?}"
    );
}

/// Waits (as a polling guest does) until `ring` has used `n` chains; the bound only
/// turns a hang into a failure.
fn wait_used(ring: &Ring, mem: &GuestMemory, n: u16) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while ring.used_idx(mem) != n {
        assert!(Instant::now() < give_up, "the device thread never answered");
        std::thread::yield_now();
    }
}

/// Blocks until `fd` is readable (bounded the same way).
fn wait_readable(fd: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call.
    let n = unsafe { libc::poll(&mut pfd, 1, 20_000) };
    assert_eq!(n, 1, "never readable");
}

#[test]
fn the_device_thread_moves_frames_both_ways_and_wakes_a_sleeping_guest() {
    let doorbell = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut s = setup_with(TSO, Execution::OwnThread, Some(&doorbell));
    let mem = s.mem.clone();
    // The guest sleeps until the first frame: used_event 0.
    s.rx.set_used_event(&mem, 0);
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    // The kick as KVM delivers it for a registered ioeventfd.
    s.t.queue_event(0).unwrap().write(1).unwrap();
    let f = frame(1000, 7);
    s.send(&f);
    wait_readable(doorbell.as_raw_fd());
    assert_eq!(s.rx.used_idx(&mem), 1);
    assert_eq!(s.bytes(RX0, 1012), delivered(&f));

    // No buffer: the frames wait in the backend until the guest posts and kicks.
    s.send(&frame(20, 1));
    s.send(&frame(30, 2));
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    s.rx.chain(&mem, &[(RX1, BIG, W)]);
    s.t.queue_event(0).unwrap().write(1).unwrap();
    wait_used(&s.rx, &mem, 3);
    assert_eq!(s.bytes(RX0, 32), delivered(&frame(20, 1)));
    assert_eq!(s.bytes(RX1, 42), delivered(&frame(30, 2)));

    // Transmit, kicked through the transport's QueueNotify.
    mem.write_slice(&frame(64, 8), GuestAddress(TXB)).unwrap();
    s.tx.chain(&mem, &[(TXB, 76, R)]);
    s.kick(TX_QUEUE);
    wait_readable(s.peer.as_raw_fd());
    assert_eq!(s.recv().unwrap(), frame(64, 8));
    wait_used(&s.tx, &mem, 1);

    // Reset joins the thread; frames sent meanwhile stay for the next activation.
    write_reg(&mut s.t, VIRTIO_MMIO_STATUS, 0);
    assert!(!s.t.is_activated());
    s.send(&frame(40, 3));
    s.init(TSO);
    s.rx.chain(&mem, &[(RX0, BIG, W)]);
    s.t.queue_event(0).unwrap().write(1).unwrap();
    wait_used(&s.rx, &mem, 1);
    assert_eq!(s.bytes(RX0, 52), delivered(&frame(40, 3)));
    assert!(s.reports().is_empty(), "{:?}", s.reports());
}

#[test]
fn a_hostile_driver_stops_the_device_thread_without_harm() {
    let mut s = setup_with(TSO, Execution::OwnThread, None);
    let mem = s.mem.clone();
    s.rx.chain(&mem, &[(RX0, 64, W)]);
    s.kick(RX_QUEUE);
    wait_used(&s.rx, &mem, 1);
    // The chain is used first, then the flag raised: wait for the flag.
    let give_up = Instant::now() + Duration::from_secs(20);
    while !s.needs_reset() {
        assert!(Instant::now() < give_up);
        std::thread::yield_now();
    }
    s.assert_fault("receive chain holds 64 bytes");
}

/// Runs `f` on a thread of its own inside a network namespace it creates, so the test
/// never sees or touches the host's interfaces; commands it starts run there too.
fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare only changes this thread's namespaces.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "unshare(CLONE_NEWNET) (the tests need root): {}",
                    std::io::Error::last_os_error()
                );
                f()
            })
            .join()
            .unwrap()
    })
}

fn ip(args: &str) {
    let out = std::process::Command::new("ip")
        .args(args.split(' '))
        .output()
        .expect("iproute2's `ip` (scripts/setup installs it)");
    assert!(out.status.success(), "ip {args}: {out:?}");
}

/// The tap's MAC address (SIOCGIFHWADDR on a socket of this namespace).
fn hw_addr(sock: i32, name: &str) -> [u8; 6] {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads and writes one ifreq, valid for the call.
    let rc = unsafe { libc::ioctl(sock, libc::SIOCGIFHWADDR, &mut req) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    // SAFETY: SIOCGIFHWADDR filled in the hardware-address member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    std::array::from_fn(|i| data[i] as u8)
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP/IPv4 frame from 10.77.0.2:4000 to 10.77.0.1:`port` with no UDP checksum.
fn udp_frame(dst_mac: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst_mac);
    f.extend(DEFAULT_MAC);
    f.extend([0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend([10, 77, 0, 2, 10, 77, 0, 1]);
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    f.extend(4000u16.to_be_bytes());
    f.extend(port.to_be_bytes());
    f.extend((8 + payload.len() as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(payload);
    f
}

#[test]
fn a_real_tap_in_a_private_namespace_carries_frames_both_ways() {
    in_private_netns(|| {
        // Opening refuses what is not an existing, free tap.
        let missing = Tap::open("flxt0").unwrap_err();
        assert!(matches!(missing, TapError::Missing { .. }), "{missing}");
        assert!(matches!(Tap::open("lo"), Err(TapError::NotATap { .. })));
        ip("tuntap add dev flxt0 mode tap");
        ip("addr add 10.77.0.1/24 dev flxt0");
        ip("link set flxt0 up");
        let tap = Tap::open("flxt0").unwrap();
        let busy = Tap::open("flxt0").unwrap_err();
        assert!(matches!(busy, TapError::Busy { .. }), "{busy}");
        assert_eq!(
            busy.to_string(),
            "tap device flxt0 is busy (another process has it open)"
        );

        let mem = memory();
        let reports: Reports = Arc::default();
        let sink = reports.clone();
        let net = Net::new(tap, DEFAULT_MAC)
            .with_report(Arc::new(move |t: &str| sink.lock().unwrap().push(t.into())));
        let mut s = Setup {
            mem: mem.clone(),
            t: MmioTransport::new(net, mem.clone()).unwrap(),
            rx: Ring::new(MEM_START, 16),
            tx: Ring::new(MEM_START + 0x3000, 16),
            peer: SocketBackend::pair().unwrap().1,
            reports,
        };
        // TUNSETOFFLOAD(CSUM | TSO4) is accepted at DRIVER_OK.
        s.init(TSO);
        assert!(s.t.is_activated() && !s.needs_reset());

        // Receive: a datagram to 10.77.0.2 makes the host ask for its MAC; the ARP
        // request comes out of the tap into the guest's buffers (maybe after IPv6
        // chatter of a fresh link, which the test skips).
        // SAFETY: plain socket creation; the descriptor is owned below.
        let udp = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        assert!(udp >= 0);
        // SAFETY: `udp` is a fresh descriptor nobody else owns.
        let udp = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(udp) };
        let sin = |ip: [u8; 4], port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip),
            },
            sin_zero: [0; 8],
        };
        let bind = sin([10, 77, 0, 1], 5555);
        // SAFETY: `bind` is a valid sockaddr_in of the given length.
        let rc = unsafe {
            libc::bind(
                udp.as_raw_fd(),
                (&bind as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        let to = sin([10, 77, 0, 2], 9);
        // SAFETY: the buffer and `to` are valid for the call.
        let n = unsafe {
            libc::sendto(
                udp.as_raw_fd(),
                b"x".as_ptr().cast(),
                1,
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        assert_eq!(n, 1, "{}", std::io::Error::last_os_error());
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut seen = 0u16;
        let arp = loop {
            s.rx.chain(&mem, &[(RX0, BIG, W)]);
            s.kick(RX_QUEUE);
            wait_used(&s.rx, &mem, seen + 1);
            let (_, len) = s.rx.used(&mem, seen);
            seen += 1;
            let got = s.bytes(RX0, len as usize);
            if got[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14] == [0x08, 0x06] {
                break got;
            }
            assert!(
                Instant::now() < give_up,
                "no ARP request came out of the tap"
            );
        };
        // num_buffers 1; a broadcast who-has 10.77.0.2 tell 10.77.0.1.
        assert_eq!(arp[10..12], [1, 0]);
        let eth = &arp[VNET_HDR_LEN..];
        assert_eq!(eth[..6], [0xff; 6]);
        assert_eq!(eth[14 + 6..14 + 8], [0, 1], "an ARP request");
        assert_eq!(eth[14 + 14..14 + 18], [10, 77, 0, 1]);
        assert_eq!(eth[14 + 24..14 + 28], [10, 77, 0, 2]);

        // Transmit: a UDP datagram to the host's socket, with a plain vnet header.
        let tap_mac = hw_addr(udp.as_raw_fd(), "flxt0");
        let payload = b"hello from the guest";
        let mut f = vec![0u8; VNET_HDR_LEN];
        f.extend(udp_frame(tap_mac, 5555, payload));
        mem.write_slice(&f, GuestAddress(TXB)).unwrap();
        s.tx.chain(&mem, &[(TXB, 12, R), (TXB + 12, f.len() as u32 - 12, R)]);
        s.kick(TX_QUEUE);
        wait_used(&s.tx, &mem, 1);
        let timeout = libc::timeval {
            tv_sec: 20,
            tv_usec: 0,
        };
        // SAFETY: SO_RCVTIMEO reads one timeval, valid for the call.
        unsafe {
            libc::setsockopt(
                udp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        let mut buf = [0u8; 64];
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(udp.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert_eq!(
            n,
            payload.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
        assert_eq!(&buf[..payload.len()], payload);
        assert_eq!(s.stats().tx_errors.load(Ordering::Relaxed), 0);
        assert!(s.reports().is_empty(), "{:?}", s.reports());
    });
}
