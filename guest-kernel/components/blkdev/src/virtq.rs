//! virtio-blk requests on one split virtqueue (the core's [`SplitQueue`]), built for a
//! polling guest that posts a batch of requests and waits for all of them.
//!
//! Plain Rust (an address is its own physical address: compartments are
//! identity-mapped), so it is tested on the host against a device thread. Every
//! location the device reads or writes is an atomic, so the device racing with us is
//! never undefined behaviour.
//!
//! Why our own and not `virtio-drivers`' `VirtIOBlk`: that one has one request in flight
//! at a time and, with RING_EVENT_IDX, kicks whenever its index is past `avail_event`,
//! that is on every request while the device is polling (it suppresses nothing); here a
//! batch is one publication of the available index and a kick only when
//! `vring_need_event` says the device asked for one (it sleeps).
//!
//! Descriptors are handed out from 0 for each batch: a batch is complete before the next
//! is posted, so there is no free list. Request `i` of a batch uses header `i` and status
//! byte `i` of the request block, which sits beside the queue in the private heap.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use flexos_virtio::SplitQueue;
pub use flexos_virtio::queue::need_event;

/// Descriptors in the queue (a power of two; the device's maximum is 256).
pub const QUEUE_SIZE: u16 = 64;
const N: usize = QUEUE_SIZE as usize;
/// Most requests in one batch: each takes at least 3 descriptors (header, data, status).
pub const MAX_BATCH: usize = N / 3;

/// Status byte value before the device answers.
pub const STATUS_PENDING: u8 = 0xff;

/// `struct virtio_blk_outhdr`.
#[repr(C)]
struct Header {
    kind: AtomicU32,
    reserved: AtomicU32,
    sector: AtomicU64,
}

/// What the device reaches besides the queue and the data: request headers and
/// status bytes.
#[repr(C)]
struct Requests {
    headers: [Header; N],
    status: [AtomicU8; N],
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

/// The queue and the request block.
pub struct Virtq {
    queue: SplitQueue,
    requests: &'static Requests,
}

impl Virtq {
    /// Requests over `queue`, which must have exactly [`QUEUE_SIZE`] entries.
    ///
    /// # Panics
    ///
    /// If it has not (a driver bug: the driver sets the queue up with that size).
    pub fn new(queue: SplitQueue) -> Virtq {
        assert_eq!(queue.size(), QUEUE_SIZE, "blkdev's queue size");
        let requests = Box::new(Requests {
            headers: [const {
                Header {
                    kind: AtomicU32::new(0),
                    reserved: AtomicU32::new(0),
                    sector: AtomicU64::new(0),
                }
            }; N],
            status: [const { AtomicU8::new(0) }; N],
        });
        // Never freed: the device may still write a status after a failed wait.
        Virtq {
            queue,
            requests: Box::leak(requests),
        }
    }

    /// Writes `requests` into the ring and publishes them with one index update; returns
    /// whether the device asked to be notified (then write QueueNotify).
    pub fn post(&mut self, requests: &[Request<'_>]) -> Result<bool, PostError> {
        if self.queue.outstanding() != 0 {
            return Err(PostError::Busy);
        }
        let descs: usize = requests.iter().map(|r| r.data.len() + 2).sum();
        if requests.is_empty() || requests.len() > MAX_BATCH || descs > N {
            return Err(PostError::TooBig);
        }
        let r = self.requests;
        let mut next = 0u16;
        for (i, req) in requests.iter().enumerate() {
            let head = next;
            let header = &r.headers[i];
            header.kind.store(req.kind, Ordering::Relaxed);
            header.reserved.store(0, Ordering::Relaxed);
            header.sector.store(req.sector, Ordering::Relaxed);
            r.status[i].store(STATUS_PENDING, Ordering::Relaxed);
            self.queue
                .set_desc(next, addr_of(header), 16, false, Some(next + 1));
            next += 1;
            for seg in req.data {
                self.queue
                    .set_desc(next, seg.addr, seg.len, seg.device_writes, Some(next + 1));
                next += 1;
            }
            self.queue
                .set_desc(next, addr_of(&r.status[i]), 1, true, None);
            next += 1;
            self.queue.push(head);
        }
        Ok(self.queue.publish())
    }

    /// Whether the device has used every request of the batch in flight.
    #[inline]
    pub fn done(&self) -> bool {
        self.queue.all_used()
    }

    /// Ends the batch once [`Self::done`]: the status byte of each of its requests
    /// (the first `statuses.len()`; [`STATUS_PENDING`] if the device used a chain
    /// without answering it).
    pub fn finish(&mut self, statuses: &mut [u8]) {
        let n = usize::from(self.queue.outstanding());
        for (i, s) in statuses.iter_mut().enumerate().take(n) {
            *s = self.requests.status[i].load(Ordering::Acquire);
        }
        for _ in 0..n {
            self.queue.pop_used();
        }
    }

    /// The queue (for tests that play the device).
    pub fn queue(&self) -> &SplitQueue {
        &self.queue
    }
}
