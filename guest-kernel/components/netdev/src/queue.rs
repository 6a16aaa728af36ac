//! A split virtqueue in this compartment's heap (the device can reach only the data
//! window and the channel heaps, never .data/.bss), with EVENT_IDX notification
//! suppression in both directions.
//!
//! Layout of the one 12 KiB, page-aligned allocation (queue size <= 256):
//! descriptors at 0 (16 B each), the available ring at 4 KiB (flags, idx, ring[n],
//! used_event), the used ring at 8 KiB (flags, idx, ring[n] of (id, len), avail_event).
//! The device writes the used ring and avail_event at any time, so those are read
//! with atomics; what only the driver writes while the device may read it (avail idx,
//! used_event) is written with release/SeqCst atomics.

use alloc::alloc::{Layout, alloc_zeroed, handle_alloc_error};
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering, fence};

/// Largest queue this driver sets up.
pub const MAX_SIZE: u16 = 256;
const AVAIL_AT: usize = 4096;
const USED_AT: usize = 8192;
const BYTES: usize = 12288;

/// The device writes into the buffer.
pub const DESC_F_WRITE: u16 = 2;

/// One split virtqueue.
pub struct Queue {
    mem: *mut u8,
    size: u16,
    /// Private copy of the available index (we are its only writer).
    avail_idx: u16,
    /// The next used entry to look at.
    last_used: u16,
    /// Available index at the last kick (or when the device last asked for one).
    kicked_at: u16,
}

impl Queue {
    /// A zeroed queue of `size` entries (1..=MAX_SIZE, a power of two).
    pub fn new(size: u16) -> Queue {
        assert!(
            size.is_power_of_two() && size <= MAX_SIZE,
            "bad queue size {size}"
        );
        let layout = Layout::from_size_align(BYTES, 4096).expect("static layout");
        // SAFETY: the layout has a non-zero size.
        let mem = unsafe { alloc_zeroed(layout) };
        if mem.is_null() {
            handle_alloc_error(layout);
        }
        Queue {
            mem,
            size,
            avail_idx: 0,
            last_used: 0,
            kicked_at: 0,
        }
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn desc_addr(&self) -> u64 {
        self.mem as u64
    }

    pub fn avail_addr(&self) -> u64 {
        self.mem as u64 + AVAIL_AT as u64
    }

    pub fn used_addr(&self) -> u64 {
        self.mem as u64 + USED_AT as u64
    }

    fn u16_at(&self, at: usize) -> &AtomicU16 {
        debug_assert!(at < BYTES && at.is_multiple_of(2));
        // SAFETY: `at` is inside the allocation (owned by self for its whole life,
        // never freed: the device may use it until reset) and 2-aligned; the device
        // writes it concurrently, hence the atomic.
        unsafe { &*self.mem.add(at).cast::<AtomicU16>() }
    }

    fn u32_at(&self, at: usize) -> &AtomicU32 {
        debug_assert!(at < BYTES && at.is_multiple_of(4));
        // SAFETY: as in `u16_at`, 4-aligned.
        unsafe { &*self.mem.add(at).cast::<AtomicU32>() }
    }

    /// Points descriptor `id` at `addr .. addr + len` (device-writable if `write`).
    /// The device does not read a descriptor before it is made available.
    pub fn set_desc(&mut self, id: u16, addr: u64, len: u32, write: bool) {
        assert!(id < self.size);
        let d = usize::from(id) * 16;
        let flags = if write { DESC_F_WRITE } else { 0 };
        // SAFETY: descriptor `id` lies inside the allocation; the device reads it only
        // after it is published through the available ring (release store below), and
        // `id` is not in the device's hands now (the caller's contract).
        unsafe {
            self.mem.add(d).cast::<u64>().write_volatile(addr);
            self.mem.add(d + 8).cast::<u32>().write_volatile(len);
            self.mem.add(d + 12).cast::<u16>().write_volatile(flags);
            self.mem.add(d + 14).cast::<u16>().write_volatile(0);
        }
    }

    /// Changes only the length of descriptor `id` (a transmit buffer reused).
    pub fn set_len(&mut self, id: u16, len: u32) {
        assert!(id < self.size);
        // SAFETY: as in `set_desc`.
        unsafe {
            self.mem
                .add(usize::from(id) * 16 + 8)
                .cast::<u32>()
                .write_volatile(len)
        };
    }

    /// Makes descriptor `id` available to the device (not yet published: see
    /// [`Queue::publish`]).
    pub fn push(&mut self, id: u16) {
        let slot = usize::from(self.avail_idx % self.size);
        self.u16_at(AVAIL_AT + 4 + 2 * slot)
            .store(id, Ordering::Relaxed);
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Publishes the pushed descriptors; returns whether the device asked to be
    /// kicked for them (EVENT_IDX: it sleeps and wants a notify once avail passes
    /// avail_event).
    pub fn publish(&mut self) -> bool {
        let new = self.avail_idx;
        self.u16_at(AVAIL_AT + 2).store(new, Ordering::Release);
        // The device stores avail_event then re-reads avail idx; we store avail idx
        // then read avail_event: the fences make sure one of us sees the other.
        fence(Ordering::SeqCst);
        let old = self.kicked_at;
        let event = self
            .u16_at(USED_AT + 4 + 8 * usize::from(self.size))
            .load(Ordering::Relaxed);
        self.kicked_at = new;
        // vring_need_event: did avail move past `event` since the last check?
        new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
    }

    /// The next used entry (descriptor id, bytes the device wrote), if any.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        let idx = self.u16_at(USED_AT + 2).load(Ordering::Acquire);
        if idx == self.last_used {
            return None;
        }
        let slot = USED_AT + 4 + 8 * usize::from(self.last_used % self.size);
        let id = self.u32_at(slot).load(Ordering::Relaxed);
        let len = self.u32_at(slot + 4).load(Ordering::Relaxed);
        self.last_used = self.last_used.wrapping_add(1);
        Some((id as u16, len))
    }

    /// Is a used entry waiting?
    pub fn has_used(&self) -> bool {
        self.u16_at(USED_AT + 2).load(Ordering::Acquire) != self.last_used
    }

    /// Asks the device to ring the doorbell when it adds the next used entry
    /// (used_event = the index we look at next), then re-checks: `true` if an entry
    /// is already there (do not sleep).
    pub fn arm(&self) -> bool {
        self.u16_at(AVAIL_AT + 4 + 2 * usize::from(self.size))
            .store(self.last_used, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.has_used()
    }

    /// Stops asking for notifications while we poll: used_event half the index space
    /// behind, so the device crosses it only after 32k more entries.
    pub fn disarm(&self) {
        self.u16_at(AVAIL_AT + 4 + 2 * usize::from(self.size))
            .store(self.last_used.wrapping_sub(0x8000), Ordering::Relaxed);
    }
}
