//! A test driver: lays out a split queue in guest memory, programs a transport through
//! its registers like a guest would, and posts hand-built descriptor chains.

use virtio_bindings::bindings::virtio_config::*;
use virtio_bindings::bindings::virtio_mmio::*;
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Bytes, GuestAddress};

use crate::virtio::mmio::MmioTransport;
use crate::virtio::{GuestMemory, VirtioDevice};

/// Guest memory the device may use: [MEM_START, MEM_END).
pub const MEM_START: u64 = 0x10_000;
pub const MEM_SIZE: usize = 0x40_000;
pub const MEM_END: u64 = MEM_START + MEM_SIZE as u64;
pub const DESC: u64 = MEM_START;
pub const AVAIL: u64 = MEM_START + 0x1000;
pub const USED: u64 = MEM_START + 0x2000;
/// Free memory for headers, data and status bytes.
pub const DATA: u64 = MEM_START + 0x4000;

pub const R: u16 = 0;
pub const W: u16 = VRING_DESC_F_WRITE as u16;

pub fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(MEM_START), MEM_SIZE)]).unwrap()
}

pub fn write_reg<D: VirtioDevice>(t: &mut MmioTransport<D>, offset: u32, value: u32) {
    t.write(u64::from(offset), &value.to_le_bytes());
}

pub fn read_reg<D: VirtioDevice>(t: &mut MmioTransport<D>, offset: u32) -> u32 {
    let mut b = [0u8; 4];
    t.read(u64::from(offset), &mut b);
    u32::from_le_bytes(b)
}

/// The driver side of queue 0.
pub struct Driver {
    pub mem: GuestMemory,
    pub size: u16,
    next_desc: u16,
    avail_idx: u16,
}

impl Driver {
    pub fn new(mem: &GuestMemory, size: u16) -> Driver {
        Driver {
            mem: mem.clone(),
            size,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    /// Runs the initialisation sequence with `features`; returns the final status.
    pub fn init<D: VirtioDevice>(&self, t: &mut MmioTransport<D>, features: u64) -> u32 {
        write_reg(t, VIRTIO_MMIO_STATUS, 0);
        write_reg(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        write_reg(
            t,
            VIRTIO_MMIO_STATUS,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
        );
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        write_reg(t, VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
        let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
        write_reg(t, VIRTIO_MMIO_STATUS, s);
        self.setup_queue(t, DESC, AVAIL, USED);
        write_reg(t, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
        read_reg(t, VIRTIO_MMIO_STATUS)
    }

    pub fn setup_queue<D: VirtioDevice>(
        &self,
        t: &mut MmioTransport<D>,
        desc: u64,
        avail: u64,
        used: u64,
    ) {
        write_reg(t, VIRTIO_MMIO_QUEUE_SEL, 0);
        write_reg(t, VIRTIO_MMIO_QUEUE_NUM, u32::from(self.size));
        for (low, value) in [
            (VIRTIO_MMIO_QUEUE_DESC_LOW, desc),
            (VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail),
            (VIRTIO_MMIO_QUEUE_USED_LOW, used),
        ] {
            write_reg(t, low, value as u32);
            write_reg(t, low + 4, (value >> 32) as u32);
        }
        write_reg(t, VIRTIO_MMIO_QUEUE_READY, 1);
    }

    /// Writes descriptor `index` as (addr, len, flags, next).
    pub fn put_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(DESC + 16 * u64::from(index));
        self.mem.write_obj(addr.to_le(), at).unwrap();
        self.mem
            .write_obj(len.to_le(), at.unchecked_add_u(8))
            .unwrap();
        self.mem
            .write_obj(flags.to_le(), at.unchecked_add_u(12))
            .unwrap();
        self.mem
            .write_obj(next.to_le(), at.unchecked_add_u(14))
            .unwrap();
    }

    /// Posts head `head` on the available ring.
    pub fn post(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        self.mem
            .write_obj(head.to_le(), GuestAddress(AVAIL + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(self.avail_idx);
    }

    pub fn set_avail_idx(&self, idx: u16) {
        self.mem
            .write_obj(idx.to_le(), GuestAddress(AVAIL + 2))
            .unwrap();
    }

    /// Builds a chain from (addr, len, R or W) parts in fresh descriptors and posts it;
    /// returns its head.
    pub fn chain(&mut self, parts: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, dir)) in parts.iter().enumerate() {
            let index = (head + i as u16) % self.size;
            let last = i + 1 == parts.len();
            let flags = dir | if last { 0 } else { VRING_DESC_F_NEXT as u16 };
            self.put_desc(index, addr, len, flags, (index + 1) % self.size);
        }
        self.next_desc = (head + parts.len() as u16) % self.size;
        self.post(head);
        head
    }

    pub fn used_idx(&self) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(USED + 2)).unwrap())
    }

    /// The used element `n`: (head, len).
    pub fn used(&self, n: u16) -> (u32, u32) {
        let at = USED + 4 + 8 * u64::from(n % self.size);
        let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
        (u32::from_le(id), u32::from_le(len))
    }

    pub fn byte(&self, addr: u64) -> u8 {
        self.mem.read_obj(GuestAddress(addr)).unwrap()
    }

    pub fn fill(&self, addr: u64, len: usize, value: u8) {
        self.mem
            .write_slice(&vec![value; len], GuestAddress(addr))
            .unwrap();
    }

    pub fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// A virtio-blk request header at `addr`.
    pub fn header(&self, addr: u64, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(addr)).unwrap();
    }
}

trait AddU {
    fn unchecked_add_u(self, n: u64) -> GuestAddress;
}

impl AddU for GuestAddress {
    fn unchecked_add_u(self, n: u64) -> GuestAddress {
        GuestAddress(self.0 + n)
    }
}
