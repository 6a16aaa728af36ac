//! The driver side of one split virtqueue (virtio 1.2, 2.7) for virtio-blk requests,
//! built for a polling guest that posts a batch of requests and waits for all of them.
//!
//! Plain Rust over one [`Ring`] block of memory the device can reach (an address is its
//! own physical address: compartments are identity-mapped), so it is tested on the host
//! against a device thread. Every location the device reads or writes is an atomic, so
//! the device racing with us is never undefined behaviour.
//!
//! Why our own and not `virtio-drivers`' `VirtIOBlk`: that one has one request in flight
//! at a time and, with RING_EVENT_IDX, kicks whenever its index is past `avail_event`,
//! that is on every request while the device is polling (it suppresses nothing); here a
//! batch is one publication of the available index and a kick only when
//! `vring_need_event` says the device asked for one (it sleeps).
//!
//! Descriptors are handed out from 0 for each batch: a batch is complete before the next
//! is posted, so there is no free list. Request `i` of a batch uses header `i` and status
//! byte `i` of the ring block.

use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

/// Descriptors in the queue (a power of two; the device's maximum is 256).
pub const QUEUE_SIZE: u16 = 64;
const N: usize = QUEUE_SIZE as usize;
/// Most requests in one batch: each takes at least 3 descriptors (header, data, status).
pub const MAX_BATCH: usize = N / 3;

const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Status byte value before the device answers.
pub const STATUS_PENDING: u8 = 0xff;

#[repr(C)]
pub struct Desc {
    addr: AtomicU64,
    len: AtomicU32,
    flags: AtomicU16,
    next: AtomicU16,
}

#[repr(C)]
pub struct UsedElem {
    id: AtomicU32,
    len: AtomicU32,
}

/// `struct virtio_blk_outhdr`.
#[repr(C)]
pub struct Header {
    kind: AtomicU32,
    reserved: AtomicU32,
    sector: AtomicU64,
}

/// Everything the device reaches besides the data: descriptor table, available ring,
/// used ring, request headers and status bytes, in one page-aligned block.
#[repr(C, align(4096))]
pub struct Ring {
    desc: [Desc; N],
    avail_flags: AtomicU16,
    avail_idx: AtomicU16,
    avail_ring: [AtomicU16; N],
    used_event: AtomicU16,
    _pad: [u8; 2048 - (16 * N + 6 + 2 * N)],
    used_flags: AtomicU16,
    used_idx: AtomicU16,
    used_ring: [UsedElem; N],
    avail_event: AtomicU16,
    headers: [Header; N],
    status: [AtomicU8; N],
}

impl Ring {
    /// Guest-physical addresses of the descriptor table, available and used rings.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (
            addr_of(&self.desc),
            addr_of(&self.avail_flags),
            addr_of(&self.used_flags),
        )
    }
}

fn addr_of<T>(x: &T) -> u64 {
    x as *const T as u64
}

/// A piece of memory the device reads (`device_writes` false) or fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: u64,
    pub len: u32,
    pub device_writes: bool,
}

/// One request: its type (VIRTIO_BLK_T_*), first sector and data.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub kind: u32,
    pub sector: u64,
    pub data: &'a [Segment],
}

/// Why a batch cannot be posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostError {
    /// More requests or descriptors than the queue holds, or an empty batch.
    TooBig,
    /// The previous batch has not completed.
    Busy,
}

/// The queue: the ring block and our copies of the indices.
pub struct Virtq {
    ring: &'static Ring,
    /// The next available index we publish.
    avail: u16,
    /// Requests of the batch in flight (0: none).
    in_flight: u16,
}

impl Virtq {
    /// A queue over `ring` (zeroed memory the device can reach); set it up with the
    /// device at [`QUEUE_SIZE`] descriptors exactly (the used_event and avail_event
    /// fields sit after rings of that size).
    pub fn new(ring: &'static Ring) -> Virtq {
        // We poll: ask never to be interrupted (the device has no interrupts anyway).
        ring.avail_flags.store(1, Ordering::Relaxed);
        Virtq {
            ring,
            avail: 0,
            in_flight: 0,
        }
    }

    /// Writes `requests` into the ring and publishes them with one index update; returns
    /// whether the device asked to be notified (then write QueueNotify).
    pub fn post(&mut self, requests: &[Request<'_>]) -> Result<bool, PostError> {
        if self.in_flight != 0 {
            return Err(PostError::Busy);
        }
        let descs: usize = requests.iter().map(|r| r.data.len() + 2).sum();
        if requests.is_empty() || requests.len() > MAX_BATCH || descs > N {
            return Err(PostError::TooBig);
        }
        let r = self.ring;
        let mut next = 0usize;
        for (i, req) in requests.iter().enumerate() {
            let head = next;
            let header = &r.headers[i];
            header.kind.store(req.kind, Ordering::Relaxed);
            header.reserved.store(0, Ordering::Relaxed);
            header.sector.store(req.sector, Ordering::Relaxed);
            r.status[i].store(STATUS_PENDING, Ordering::Relaxed);
            self.desc(next, addr_of(header), 16, false, true);
            next += 1;
            for seg in req.data {
                self.desc(next, seg.addr, seg.len, seg.device_writes, true);
                next += 1;
            }
            self.desc(next, addr_of(&r.status[i]), 1, true, false);
            next += 1;
            let slot = usize::from(self.avail.wrapping_add(i as u16)) % N;
            r.avail_ring[slot].store(head as u16, Ordering::Relaxed);
        }
        let old = self.avail;
        self.avail = old.wrapping_add(requests.len() as u16);
        self.in_flight = requests.len() as u16;
        // Descriptors and ring entries before the index (the device reads them after).
        r.avail_idx.store(self.avail, Ordering::Release);
        // The index store before the avail_event load: the device publishes avail_event
        // and then re-reads our index, so one of us sees the other.
        fence(Ordering::SeqCst);
        let event = r.avail_event.load(Ordering::Acquire);
        Ok(need_event(event, self.avail, old))
    }

    fn desc(&self, i: usize, addr: u64, len: u32, device_writes: bool, more: bool) {
        let d = &self.ring.desc[i];
        d.addr.store(addr, Ordering::Relaxed);
        d.len.store(len, Ordering::Relaxed);
        let mut flags = 0;
        if device_writes {
            flags |= VIRTQ_DESC_F_WRITE;
        }
        if more {
            flags |= VIRTQ_DESC_F_NEXT;
        }
        d.flags.store(flags, Ordering::Relaxed);
        d.next
            .store(if more { (i + 1) as u16 } else { 0 }, Ordering::Relaxed);
    }

    /// Whether the device has used every request of the batch in flight.
    pub fn done(&self) -> bool {
        self.ring.used_idx.load(Ordering::Acquire) == self.avail
    }

    /// Ends the batch once [`Self::done`]: the status byte of each of its `n` requests
    /// ([`STATUS_PENDING`] if the device used a chain without answering it).
    pub fn finish(&mut self, statuses: &mut [u8]) {
        for (i, s) in statuses
            .iter_mut()
            .enumerate()
            .take(usize::from(self.in_flight))
        {
            *s = self.ring.status[i].load(Ordering::Acquire);
        }
        self.in_flight = 0;
    }

    /// The ring block (for tests that play the device).
    pub fn ring(&self) -> &'static Ring {
        self.ring
    }
}

/// `vring_need_event`: does moving the index from `old` to `new` pass `event`?
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// What a test device needs to read the ring (host tests play the device).
pub mod device_view {
    use super::*;

    /// The available index the driver published.
    pub fn avail_idx(r: &Ring) -> u16 {
        r.avail_idx.load(Ordering::Acquire)
    }
    /// Head descriptor of available slot `slot`.
    pub fn avail_head(r: &Ring, slot: usize) -> u16 {
        r.avail_ring[slot].load(Ordering::Relaxed)
    }
    /// Descriptor `i`: (addr, len, flags, next).
    pub fn desc(r: &Ring, i: usize) -> (u64, u32, u16, u16) {
        let d = &r.desc[i];
        (
            d.addr.load(Ordering::Relaxed),
            d.len.load(Ordering::Relaxed),
            d.flags.load(Ordering::Relaxed),
            d.next.load(Ordering::Relaxed),
        )
    }
    /// Puts a used element and publishes the used index.
    pub fn push_used(r: &Ring, slot: usize, id: u32, len: u32, new_used_idx: u16) {
        r.used_ring[slot].id.store(id, Ordering::Relaxed);
        r.used_ring[slot].len.store(len, Ordering::Relaxed);
        r.used_idx.store(new_used_idx, Ordering::Release);
    }
    /// Sets avail_event (what a device does before it sleeps).
    pub fn set_avail_event(r: &Ring, value: u16) {
        r.avail_event.store(value, Ordering::Release);
        fence(Ordering::SeqCst);
    }
}
