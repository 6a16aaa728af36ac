//! The driver side of one split virtqueue (virtio 1.2, 2.7) for a polling guest, with
//! EVENT_IDX notification suppression in both directions.
//!
//! Layout of the one 12 KiB, page-aligned allocation (queue size <= [`MAX_SIZE`]):
//! descriptors at 0 (16 B each), the available ring at 4 KiB (flags, idx, ring[n],
//! used_event), the used ring at 8 KiB (flags, idx, ring[n] of (id, len),
//! avail_event). It comes from the global allocator (the private heap: the data window
//! the device can reach, never .data/.bss) and is never freed: the device may use it
//! until it is reset. An address is its own guest-physical address (compartments are
//! identity-mapped), so the queue is plain Rust, tested on the host against a device
//! played by a thread ([`DeviceView`]).
//!
//! Every location the device reads or writes is accessed with atomics, so the device
//! racing with us is never undefined behaviour: descriptors and ring entries relaxed
//! (the device reads them only after they are published), the available index with
//! release, the used index with acquire, and the two event words behind SeqCst fences
//! (see [`SplitQueue::publish`] and [`SplitQueue::arm`]).
//!
//! Kicks: [`SplitQueue::publish`] says whether the device asked for one. With
//! EVENT_IDX that is `vring_need_event` against avail_event (the device polls while
//! work keeps coming and publishes avail_event only before it sleeps, so most
//! publications cost no exit); without it, whenever the device has not set
//! NO_NOTIFY. Notifications the other way (used_event) are off until the driver
//! [`arm`](SplitQueue::arm)s them before it sleeps.

use alloc::alloc::{Layout, alloc_zeroed};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

/// Largest queue this driver sets up.
pub const MAX_SIZE: u16 = 256;
const AVAIL_AT: usize = 4096;
const USED_AT: usize = 8192;
const BYTES: usize = 12288;

/// Descriptor flags.
pub const DESC_F_NEXT: u16 = 1;
/// The device writes into the buffer.
pub const DESC_F_WRITE: u16 = 2;
/// Available ring flag (without EVENT_IDX): do not interrupt the driver.
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring flag (without EVENT_IDX): do not notify the device.
const USED_F_NO_NOTIFY: u16 = 1;

/// `vring_need_event`: does moving the index from `old` to `new` pass `event`?
#[inline]
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// The queue memory: a pointer to the 12 KiB block, with typed atomic access.
#[derive(Clone, Copy)]
struct Mem(NonNull<u8>);

// SAFETY: the block is never freed and only ever accessed through atomics, from any
// thread (in a guest there is one; host tests play the device from another).
unsafe impl Send for Mem {}
// SAFETY: as above.
unsafe impl Sync for Mem {}

impl Mem {
    #[inline(always)]
    fn at<T>(self, at: usize) -> &'static T {
        debug_assert!(at + size_of::<T>() <= BYTES && at.is_multiple_of(align_of::<T>()));
        // SAFETY: `at` is inside the block (callers compute it from the queue size, at
        // most MAX_SIZE) and aligned for T (a naturally aligned atomic; the block is
        // page-aligned); the block lives forever and is only accessed atomically.
        unsafe { &*self.0.as_ptr().add(at).cast::<T>() }
    }
    fn u16_at(self, at: usize) -> &'static AtomicU16 {
        self.at(at)
    }
    fn u32_at(self, at: usize) -> &'static AtomicU32 {
        self.at(at)
    }
    fn u64_at(self, at: usize) -> &'static AtomicU64 {
        self.at(at)
    }
}

/// One split virtqueue.
pub struct SplitQueue {
    mem: Mem,
    size: u16,
    /// VIRTIO_F_RING_EVENT_IDX was negotiated.
    event_idx: bool,
    /// Private copy of the available index (we are its only writer).
    avail_idx: u16,
    /// The next used entry to look at.
    last_used: u16,
    /// Available index at the last publication.
    published: u16,
}

impl SplitQueue {
    /// A zeroed queue of `size` entries (1..=MAX_SIZE, a power of two); `event_idx`
    /// says whether VIRTIO_F_RING_EVENT_IDX was negotiated. `None` without memory.
    ///
    /// # Panics
    ///
    /// On a bad size (a driver bug).
    pub fn new(size: u16, event_idx: bool) -> Option<SplitQueue> {
        assert!(
            size.is_power_of_two() && size <= MAX_SIZE,
            "bad queue size {size}"
        );
        let layout = Layout::from_size_align(BYTES, 4096).expect("static layout");
        // SAFETY: the layout has a non-zero size.
        let mem = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        let q = SplitQueue {
            mem: Mem(mem),
            size,
            event_idx,
            avail_idx: 0,
            last_used: 0,
            published: 0,
        };
        if event_idx {
            // The driver must leave the flags 0; used_event says "not yet".
            q.disarm();
        } else {
            // We poll: never interrupt us.
            q.avail_flags()
                .store(AVAIL_F_NO_INTERRUPT, Ordering::Relaxed);
        }
        Some(q)
    }

    #[inline]
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Guest-physical addresses of the descriptor table, the available (driver) ring
    /// and the used (device) ring, for QueueDesc, QueueDriver and QueueDevice.
    pub fn addresses(&self) -> (u64, u64, u64) {
        let base = self.mem.0.as_ptr() as u64;
        (base, base + AVAIL_AT as u64, base + USED_AT as u64)
    }

    fn avail_flags(&self) -> &'static AtomicU16 {
        self.mem.u16_at(AVAIL_AT)
    }
    fn avail_idx_word(&self) -> &'static AtomicU16 {
        self.mem.u16_at(AVAIL_AT + 2)
    }
    fn used_event(&self) -> &'static AtomicU16 {
        self.mem.u16_at(AVAIL_AT + 4 + 2 * usize::from(self.size))
    }
    fn used_flags(&self) -> &'static AtomicU16 {
        self.mem.u16_at(USED_AT)
    }
    fn used_idx(&self) -> &'static AtomicU16 {
        self.mem.u16_at(USED_AT + 2)
    }
    fn avail_event(&self) -> &'static AtomicU16 {
        self.mem.u16_at(USED_AT + 4 + 8 * usize::from(self.size))
    }

    /// Points descriptor `id` at `addr .. addr + len`, device-writable if `write`,
    /// chained to descriptor `next` if any. The device does not read a descriptor
    /// before it is made available, and the caller does not change one the device
    /// holds.
    ///
    /// # Panics
    ///
    /// If `id` or `next` is not below the queue size (a driver bug).
    #[inline]
    pub fn set_desc(&mut self, id: u16, addr: u64, len: u32, write: bool, next: Option<u16>) {
        assert!(id < self.size && next.is_none_or(|n| n < self.size));
        let d = usize::from(id) * 16;
        let mut flags = if write { DESC_F_WRITE } else { 0 };
        if next.is_some() {
            flags |= DESC_F_NEXT;
        }
        self.mem.u64_at(d).store(addr, Ordering::Relaxed);
        self.mem.u32_at(d + 8).store(len, Ordering::Relaxed);
        self.mem.u16_at(d + 12).store(flags, Ordering::Relaxed);
        self.mem
            .u16_at(d + 14)
            .store(next.unwrap_or(0), Ordering::Relaxed);
    }

    /// Changes only the length of descriptor `id` (a buffer reused).
    #[inline]
    pub fn set_len(&mut self, id: u16, len: u32) {
        assert!(id < self.size);
        self.mem
            .u32_at(usize::from(id) * 16 + 8)
            .store(len, Ordering::Relaxed);
    }

    /// Makes the chain headed by descriptor `head` available to the device (not yet
    /// published: see [`SplitQueue::publish`]).
    #[inline]
    pub fn push(&mut self, head: u16) {
        let slot = usize::from(self.avail_idx % self.size);
        self.mem
            .u16_at(AVAIL_AT + 4 + 2 * slot)
            .store(head, Ordering::Relaxed);
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Publishes the pushed chains with one index update; returns whether the device
    /// asked to be notified for them (then write QueueNotify).
    #[inline]
    pub fn publish(&mut self) -> bool {
        let new = self.avail_idx;
        // Descriptors and ring entries before the index (the device reads them after).
        self.avail_idx_word().store(new, Ordering::Release);
        // The device stores avail_event then re-reads the avail index; we store the
        // index then read avail_event: the fences make sure one of us sees the other.
        fence(Ordering::SeqCst);
        let old = core::mem::replace(&mut self.published, new);
        if self.event_idx {
            need_event(self.avail_event().load(Ordering::Relaxed), new, old)
        } else {
            new != old && self.used_flags().load(Ordering::Relaxed) & USED_F_NO_NOTIFY == 0
        }
    }

    /// Chains made available and not yet taken back with [`SplitQueue::pop_used`].
    #[inline]
    pub fn outstanding(&self) -> u16 {
        self.avail_idx.wrapping_sub(self.last_used)
    }

    /// Has the device used every chain made available?
    #[inline]
    pub fn all_used(&self) -> bool {
        self.used_idx().load(Ordering::Acquire) == self.avail_idx
    }

    /// The next used entry (head descriptor id as the device wrote it, bytes it
    /// wrote), if any. The id is the device's word: check it before use.
    #[inline]
    pub fn pop_used(&mut self) -> Option<(u32, u32)> {
        let idx = self.used_idx().load(Ordering::Acquire);
        if idx == self.last_used {
            return None;
        }
        let slot = USED_AT + 4 + 8 * usize::from(self.last_used % self.size);
        let id = self.mem.u32_at(slot).load(Ordering::Relaxed);
        let len = self.mem.u32_at(slot + 4).load(Ordering::Relaxed);
        self.last_used = self.last_used.wrapping_add(1);
        Some((id, len))
    }

    /// Is a used entry waiting?
    #[inline]
    pub fn has_used(&self) -> bool {
        self.used_idx().load(Ordering::Acquire) != self.last_used
    }

    /// Asks the device to notify (ring the compartment's doorbell) when it adds the
    /// next used entry (used_event = the index we look at next), then re-checks:
    /// `true` if an entry is already there (do not sleep). Needs EVENT_IDX.
    pub fn arm(&self) -> bool {
        self.used_event().store(self.last_used, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.has_used()
    }

    /// Stops asking for notifications while we poll: used_event half the index space
    /// behind, so the device crosses it only after 32k more entries.
    pub fn disarm(&self) {
        self.used_event()
            .store(self.last_used.wrapping_sub(0x8000), Ordering::Relaxed);
    }

    /// What a device sees of this queue, for host tests that play the device.
    pub fn device_view(&self) -> DeviceView {
        DeviceView {
            mem: self.mem,
            size: self.size,
        }
    }
}

/// The device's side of a [`SplitQueue`]: what a host test needs to play the device
/// (from another thread; the queue memory is never freed).
#[derive(Clone, Copy)]
pub struct DeviceView {
    mem: Mem,
    size: u16,
}

impl DeviceView {
    /// The queue size.
    pub fn size(&self) -> u16 {
        self.size
    }
    /// The available index the driver published.
    pub fn avail_idx(&self) -> u16 {
        self.mem.u16_at(AVAIL_AT + 2).load(Ordering::Acquire)
    }
    /// The available ring's flags.
    pub fn avail_flags(&self) -> u16 {
        self.mem.u16_at(AVAIL_AT).load(Ordering::Relaxed)
    }
    /// Head descriptor of available entry `i` (taken modulo the size).
    pub fn avail_head(&self, i: u16) -> u16 {
        let slot = usize::from(i % self.size);
        self.mem
            .u16_at(AVAIL_AT + 4 + 2 * slot)
            .load(Ordering::Relaxed)
    }
    /// Descriptor `i`: (addr, len, flags, next).
    pub fn desc(&self, i: u16) -> (u64, u32, u16, u16) {
        let d = usize::from(i % self.size) * 16;
        (
            self.mem.u64_at(d).load(Ordering::Relaxed),
            self.mem.u32_at(d + 8).load(Ordering::Relaxed),
            self.mem.u16_at(d + 12).load(Ordering::Relaxed),
            self.mem.u16_at(d + 14).load(Ordering::Relaxed),
        )
    }
    /// used_event, as the driver set it.
    pub fn used_event(&self) -> u16 {
        self.mem
            .u16_at(AVAIL_AT + 4 + 2 * usize::from(self.size))
            .load(Ordering::Relaxed)
    }
    /// Puts used entry `i` (taken modulo the size) and publishes the used index
    /// `i + 1`.
    pub fn push_used(&self, i: u16, id: u32, len: u32) {
        let slot = USED_AT + 4 + 8 * usize::from(i % self.size);
        self.mem.u32_at(slot).store(id, Ordering::Relaxed);
        self.mem.u32_at(slot + 4).store(len, Ordering::Relaxed);
        self.mem
            .u16_at(USED_AT + 2)
            .store(i.wrapping_add(1), Ordering::Release);
    }
    /// Sets avail_event (what a device does before it sleeps), then a SeqCst fence.
    pub fn set_avail_event(&self, value: u16) {
        self.mem
            .u16_at(USED_AT + 4 + 8 * usize::from(self.size))
            .store(value, Ordering::Release);
        fence(Ordering::SeqCst);
    }
    /// Sets the used ring's flags (NO_NOTIFY = 1, without EVENT_IDX).
    pub fn set_used_flags(&self, value: u16) {
        self.mem.u16_at(USED_AT).store(value, Ordering::Release);
    }
}
