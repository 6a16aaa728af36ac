//! virtio-net through the transport as a guest drives it, with a socket pair as the
//! host side (a real tap in `real_tap`): frames both ways, frames waiting for buffers,
//! notifications (`frames`, `threaded`), and hostile drivers (`hostile`: every bad
//! chain ends in DEVICE_NEEDS_RESET and a report, never a panic or a byte outside the
//! device's memory).
//!
//! This file holds the test driver: a split queue laid out by hand ([`Ring`]) and a
//! device started through its registers ([`Setup`]).

mod frames;
mod hostile;
mod real_tap;
mod threaded;

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
