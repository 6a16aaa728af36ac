//! [`Region`]: a validated view of the mapped shared region, and [`SharedBytes`]: the
//! only way to touch shared-heap bytes.
//!
//! A peer can write any byte of a channel it shares with this compartment at any time
//! (and the monitor the header), so no Rust reference to plain data (`&u64`, `&[u8]`,
//! `&mut [u8]`) ever points into the region: the compiler would be entitled to assume
//! such data does not change underneath. All accesses are atomics, with one size per
//! location (`AtomicU64` for header words, ring slots and heap words; `AtomicU32` for
//! the dead, sleeping and ready flags), which is sound however peers race with them,
//! and the layout is read once, validated, and kept privately.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{GateError, LayoutError};
use crate::gate::SharedBuf;
use crate::layout::{Header, Layout, HEADER_SIZE, LINE};
use crate::slot::SLOT_WORDS;

/// One ring slot, one cache line.
#[repr(C, align(64))]
pub(crate) struct Slot {
    pub(crate) w: [AtomicU64; SLOT_WORDS],
}

/// The start of one compartment's state page (written by its owner only).
#[repr(C)]
pub(crate) struct StateLine {
    pub(crate) sleeping: AtomicU32,
    pub(crate) ready: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<Slot>() == LINE as usize);

/// A validated view of the shared region mapped at `base`. Copying it is cheap; its
/// [`Layout`] is a private copy taken when it was validated, never re-read.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a Region only hands out atomics into the mapping (see `from_raw`'s contract),
// which may be used from any thread.
unsafe impl Send for Region {}
// SAFETY: as above; every access through `&Region` is atomic.
unsafe impl Sync for Region {}

/// Checks the base pointer of a mapping.
fn check_base(base: *mut u8) -> Result<NonNull<u8>, LayoutError> {
    match NonNull::new(base) {
        Some(p) if (base as usize) % LINE as usize == 0 => Ok(p),
        _ => Err(LayoutError::Misaligned),
    }
}

impl Region {
    /// Validates the region header at `base` and returns a view of the region.
    ///
    /// Checks the alignment of `base` (64 bytes), the magic, the version, and that
    /// every header field equals the layout computed for `size` and the header's
    /// compartment count.
    ///
    /// # Safety
    ///
    /// `base .. base + size` must be mapped readable and writable for as long as the
    /// returned `Region`, any copy of it, or anything borrowed from them is used, and
    /// within this address space it must only be accessed through this crate (or other
    /// atomic accesses); other processes and VMs may write it at will.
    pub unsafe fn from_raw(base: *mut u8, size: usize) -> Result<Region, LayoutError> {
        let base = check_base(base)?;
        if size < HEADER_SIZE {
            return Err(LayoutError::TooSmall {
                need: HEADER_SIZE as u64,
                have: size as u64,
            });
        }
        let mut words = [0u64; Header::WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            // SAFETY: the header lies inside the mapping (size >= HEADER_SIZE), word i
            // is 8-byte aligned because base is 64-byte aligned, and the caller
            // promises the mapping is only accessed atomically.
            let a = unsafe { &*(base.as_ptr().add(i * 8) as *const AtomicU64) };
            *w = a.load(Ordering::Acquire);
        }
        let layout = Layout::from_header(&Header::from_words(&words), size as u64)?;
        Ok(Region { base, layout })
    }

    /// Lays out a fresh region of `size` bytes for `compartments` compartments: zeroes
    /// the flags and rings (each with the atomic size it is used with later), then
    /// writes the header. For tests and host-side users; the monitor instead writes
    /// [`Header::to_bytes`] at offset 0 of zeroed guest memory.
    ///
    /// # Safety
    ///
    /// As for [`Region::from_raw`], and no compartment may be using the region yet.
    pub unsafe fn init(
        base: *mut u8,
        size: usize,
        compartments: u32,
    ) -> Result<Region, LayoutError> {
        let base = check_base(base)?;
        let layout = Layout::new(size as u64, compartments)?;
        let region = Region { base, layout };
        let n = layout.compartments();
        for c in 0..n {
            region.dead(c).store(0, Ordering::Relaxed);
            let state = region.state(c);
            state.sleeping.store(0, Ordering::Relaxed);
            state.ready.store(0, Ordering::Relaxed);
            for peer in (0..n).filter(|&p| p != c) {
                for i in 0..crate::RING_SLOTS {
                    for w in &region.slot(c, peer, i).w {
                        w.store(0, Ordering::Relaxed);
                    }
                }
            }
        }
        for (i, w) in layout.header().to_words().into_iter().enumerate() {
            region
                .at::<AtomicU64>(i as u64 * 8)
                .store(w, Ordering::Release);
        }
        Ok(region)
    }

    /// The validated layout.
    #[inline]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The first byte of the region (same address in every compartment).
    #[inline]
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Number of compartments.
    #[inline]
    pub fn compartments(&self) -> u32 {
        self.layout.compartments()
    }

    /// A pointer to the atomic at `offset` (in bounds and aligned by construction of
    /// the callers).
    #[inline(always)]
    fn at<T>(&self, offset: u64) -> &T {
        debug_assert!(offset + core::mem::size_of::<T>() as u64 <= self.layout.region_size());
        debug_assert!(offset % core::mem::align_of::<T>() as u64 == 0);
        // SAFETY: every caller passes an offset computed from the validated layout, so
        // the object lies inside the mapping and is aligned (base is 64-byte aligned);
        // T is always an atomic or a struct of atomics, which may be shared and
        // mutated concurrently; the mapping outlives `self` (from_raw's contract).
        unsafe { &*(self.base.as_ptr().add(offset as usize) as *const T) }
    }

    /// Slot `index % RING_SLOTS` of the ring `caller -> callee`.
    #[inline(always)]
    pub(crate) fn slot(&self, caller: u32, callee: u32, index: u32) -> &Slot {
        self.at(self.layout.slot_offset(caller, callee, index))
    }

    /// The state page of `compartment`.
    #[inline(always)]
    pub(crate) fn state(&self, compartment: u32) -> &StateLine {
        self.at(self.layout.state_offset(compartment))
    }

    /// The dead flag of `compartment`, in the header page.
    #[inline(always)]
    fn dead(&self, compartment: u32) -> &AtomicU32 {
        self.at(self.layout.dead_flag_offset(compartment))
    }

    /// Has the monitor marked `compartment` dead? Panics if it is out of range.
    #[inline(always)]
    pub fn is_dead(&self, compartment: u32) -> bool {
        self.dead(compartment).load(Ordering::Acquire) != 0
    }

    /// Marks `compartment` dead, as the monitor does when it crashes (the monitor
    /// itself writes the flag through its own mapping at
    /// [`Layout::dead_flag_offset`]). Callers waiting on it notice within one
    /// [`crate::IdlePolicy::sleep_us`], or at once if they are spinning or get a
    /// doorbell.
    pub fn set_dead(&self, compartment: u32) {
        self.dead(compartment).store(1, Ordering::Release);
    }

    /// Has `compartment` called [`crate::Endpoint::mark_ready`]?
    #[inline]
    pub fn is_ready(&self, compartment: u32) -> bool {
        self.state(compartment).ready.load(Ordering::Acquire) != 0
    }

    /// The bytes of `buf`, after checking that it lies inside the heap of one channel.
    /// (Whether this compartment can reach that channel is enforced by the monitor;
    /// handles from a peer were already checked against the pair's channel when
    /// decoded.)
    pub fn bytes(&self, buf: SharedBuf) -> Result<SharedBytes<'_>, GateError> {
        if self.layout.in_some_heap(buf.offset(), buf.len()) {
            Ok(SharedBytes { region: self, buf })
        } else {
            Err(GateError::BadHandle)
        }
    }
}

/// The bytes of a validated [`SharedBuf`].
///
/// # Aliasing contract
///
/// These bytes are shared: any compartment may read or write them at any moment,
/// including while this compartment reads them. So this type never hands out `&[u8]`
/// or `&mut [u8]` (the compiler assumes those do not change underneath, which a peer
/// could violate: undefined behaviour). Instead it copies in and out with relaxed
/// atomic accesses of whole, 8-byte aligned heap words (every access to the heap, by
/// any compartment using this crate, has that same size, so there are no mixed-size
/// races; a partial word at either end is written with `fetch_and` + `fetch_or` on
/// the whole word, which leaves the neighbouring bytes alone). A racing writer can
/// make a read return a mix of old and new bytes, never undefined behaviour: copy the
/// data out once, then validate and use the private copy.
#[derive(Clone, Copy, Debug)]
pub struct SharedBytes<'r> {
    region: &'r Region,
    buf: SharedBuf,
}

impl<'r> SharedBytes<'r> {
    /// The handle these bytes belong to.
    pub fn handle(&self) -> SharedBuf {
        self.buf
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The address of the first byte, e.g. for a device to DMA into. Reading or writing
    /// through it from Rust is subject to the aliasing contract above.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: the buffer lies inside the mapping (checked in Region::bytes).
        unsafe { self.region.base().add(self.buf.offset() as usize) }
    }

    /// Region offset of byte `at .. at + len` after a bounds check.
    fn span(&self, at: usize, len: usize) -> Result<u64, GateError> {
        match at.checked_add(len) {
            Some(end) if end <= self.len() => Ok(self.buf.offset() as u64 + at as u64),
            _ => Err(GateError::BadHandle),
        }
    }

    /// The heap word containing region offset `off` (rounded down to 8).
    #[inline(always)]
    fn word(&self, off: u64) -> &'r AtomicU64 {
        self.region.at(off & !7)
    }

    /// Copies `dst.len()` bytes starting at `at` into `dst`.
    pub fn read(&self, at: usize, dst: &mut [u8]) -> Result<(), GateError> {
        let mut off = self.span(at, dst.len())?;
        let mut done = 0;
        while done < dst.len() {
            let skip = (off & 7) as usize;
            let n = (8 - skip).min(dst.len() - done);
            let value = self.word(off).load(Ordering::Relaxed);
            if n == 8 {
                // Whole word: a fixed-size store the compiler turns into one `mov`
                // (a variable-length copy here became a `memcpy` call per word).
                let out: &mut [u8; 8] = (&mut dst[done..done + 8]).try_into().expect("8 bytes");
                *out = value.to_le_bytes();
            } else {
                let bytes = value.to_le_bytes();
                dst[done..done + n].copy_from_slice(&bytes[skip..skip + n]);
            }
            done += n;
            off += n as u64;
        }
        Ok(())
    }

    /// Copies `src` into the bytes starting at `at`.
    pub fn write(&self, at: usize, src: &[u8]) -> Result<(), GateError> {
        let mut off = self.span(at, src.len())?;
        let mut done = 0;
        while done < src.len() {
            let skip = (off & 7) as usize;
            let n = (8 - skip).min(src.len() - done);
            let word = self.word(off);
            if n == 8 {
                let whole: &[u8; 8] = (&src[done..done + 8]).try_into().expect("8 bytes");
                word.store(u64::from_le_bytes(*whole), Ordering::Relaxed);
            } else {
                let mut bytes = [0u8; 8];
                bytes[skip..skip + n].copy_from_slice(&src[done..done + n]);
                let value = u64::from_le_bytes(bytes);
                let mask = (u64::MAX >> (64 - 8 * n as u32)) << (8 * skip as u32);
                word.fetch_and(!mask, Ordering::Relaxed);
                word.fetch_or(value, Ordering::Relaxed);
            }
            done += n;
            off += n as u64;
        }
        Ok(())
    }

    /// Copies `dst.len()` bytes starting at `at` into `dst`, like [`SharedBytes::read`]
    /// but with one `rep movsb` on x86_64 (several times faster for large copies: the
    /// word loop costs ~0.7 cycles a byte). Under Miri, and on other architectures, it
    /// is [`SharedBytes::read`]. A racing writer can make it return a mix of old and
    /// new bytes, as with `read`.
    pub fn copy_out(&self, at: usize, dst: &mut [u8]) -> Result<(), GateError> {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            let off = self.span(at, dst.len())?;
            // SAFETY: `span` checked that `off .. off + dst.len()` lies inside this
            // buffer, hence inside the mapping (`from_raw`'s contract); `dst` is
            // private memory we borrow mutably. The asm is opaque to the compiler, so
            // no Rust reference to the shared bytes exists and nothing is assumed
            // about them staying unchanged; the hardware copy of bytes another CPU
            // writes at the same time yields old or new bytes, never a fault.
            unsafe {
                rep_movsb(
                    dst.as_mut_ptr(),
                    self.region.base().add(off as usize),
                    dst.len(),
                )
            };
            Ok(())
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        self.read(at, dst)
    }

    /// Copies `src` into the bytes starting at `at`, like [`SharedBytes::write`] but
    /// with one `rep movsb` on x86_64 (see [`SharedBytes::copy_out`]).
    pub fn copy_in(&self, at: usize, src: &[u8]) -> Result<(), GateError> {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            let off = self.span(at, src.len())?;
            // SAFETY: as in `copy_out`, with the roles swapped: the destination lies
            // inside this buffer in the mapping, the source is private memory.
            unsafe {
                rep_movsb(
                    self.region.base().add(off as usize),
                    src.as_ptr(),
                    src.len(),
                )
            };
            Ok(())
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        self.write(at, src)
    }

    /// Loads the 8-byte word at `at` (which must be a multiple of 8 from the start of
    /// the buffer, whose start is word-aligned) with acquire ordering: for indices and
    /// flags that peers publish. `None` if it is out of bounds or misaligned.
    pub fn load_u64(&self, at: usize) -> Option<u64> {
        let off = self.word_at(at)?;
        Some(self.word(off).load(Ordering::Acquire))
    }

    /// Stores the 8-byte word at `at` with release ordering (see
    /// [`SharedBytes::load_u64`]). `false` if it is out of bounds or misaligned.
    pub fn store_u64(&self, at: usize, value: u64) -> bool {
        match self.word_at(at) {
            Some(off) => {
                self.word(off).store(value, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// The region offset of the aligned word at `at`, if it lies inside the buffer.
    fn word_at(&self, at: usize) -> Option<u64> {
        let off = self.span(at, 8).ok()?;
        (off % 8 == 0).then_some(off)
    }

    /// Sets every byte to `byte`.
    pub fn fill(&self, byte: u8) {
        let chunk = [byte; 64];
        let mut at = 0;
        while at < self.len() {
            let n = (self.len() - at).min(chunk.len());
            // Cannot fail: at + n <= len.
            let _ = self.write(at, &chunk[..n]);
            at += n;
        }
    }

    /// The byte at `at`.
    pub fn get(&self, at: usize) -> Option<u8> {
        let mut b = [0u8];
        self.read(at, &mut b).ok().map(|()| b[0])
    }

    /// Stores `byte` at `at`.
    pub fn set(&self, at: usize, byte: u8) -> Result<(), GateError> {
        self.write(at, &[byte])
    }
}

/// `rep movsb` of `len` bytes from `src` to `dst`.
///
/// # Safety
///
/// Both ranges must be valid for the access and not overlap.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
unsafe fn rep_movsb(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller guarantees both ranges; the direction flag is clear (the
    // Rust ABI requires it at every asm block); the instruction changes only RCX, RDI,
    // RSI (declared) and the destination bytes, and no flags.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    fn mapping(pages: usize) -> Vec<Page> {
        (0..pages).map(|_| Page([0; 4096])).collect()
    }

    #[test]
    fn init_then_validate() {
        let mut m = mapping(64);
        let size = m.len() * 4096;
        let base = m.as_mut_ptr() as *mut u8;
        // SAFETY: `m` outlives every Region below and is only used through them.
        let r = unsafe { Region::init(base, size, 3) }.unwrap();
        // SAFETY: as above.
        let r2 = unsafe { Region::from_raw(base, size) }.unwrap();
        assert_eq!(r.layout(), r2.layout());
        // SAFETY: as above.
        let short = unsafe { Region::from_raw(base, size - 4096) };
        assert_eq!(short.unwrap_err(), LayoutError::Mismatch);
        // SAFETY: as above (a misaligned base is rejected before any access).
        let misaligned = unsafe { Region::from_raw(base.add(8), size - 64) };
        assert_eq!(misaligned.unwrap_err(), LayoutError::Misaligned);
        assert!(!r.is_dead(2));
        r.set_dead(2);
        assert!(r2.is_dead(2));
        let dead_at = r.layout().dead_flag_offset(2) as usize;
        assert_eq!(
            u32::from_le_bytes(m[0].0[dead_at..dead_at + 4].try_into().unwrap()),
            1
        );
    }

    #[test]
    fn header_bytes_match_memory() {
        let mut m = mapping(16);
        let size = m.len() * 4096;
        // SAFETY: `m` outlives the Region and is read plainly only after it is gone.
        let r = unsafe { Region::init(m.as_mut_ptr() as *mut u8, size, 2) }.unwrap();
        let bytes = r.layout().header().to_bytes();
        assert_eq!(&m[0].0[..HEADER_SIZE], &bytes[..]);
    }

    #[test]
    fn bytes_copy_in_and_out() {
        let mut m = mapping(16);
        let size = m.len() * 4096;
        // SAFETY: `m` outlives the Region and is only used through it.
        let r = unsafe { Region::init(m.as_mut_ptr() as *mut u8, size, 1) }.unwrap();
        let heap = r.layout().channel_heap(0, 0);
        let whole = SharedBuf::from_parts(heap.offset(), heap.size());
        let all = r.bytes(whole).unwrap();
        all.fill(0xAA);
        // Every alignment and length up to a few words, checked against a model.
        let mut model = std::vec![0xAAu8; 64];
        let view = r.bytes(whole.slice(8, 64).unwrap()).unwrap();
        let mut seed = 1u32;
        for at in 0..20 {
            for len in 0..(64 - at).min(30) {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let src: Vec<u8> = (0..len).map(|i| (seed >> 8) as u8 ^ i as u8).collect();
                view.write(at, &src).unwrap();
                model[at..at + len].copy_from_slice(&src);
                let mut back = std::vec![0u8; 64];
                view.read(0, &mut back).unwrap();
                assert_eq!(back, model, "at {at} len {len}");
            }
        }
        // Neighbours untouched.
        assert_eq!(all.get(7), Some(0xAA));
        assert_eq!(all.get(8 + 64), Some(0xAA));
        assert_eq!(view.write(60, &[0; 5]), Err(GateError::BadHandle));
        assert_eq!(
            view.read(usize::MAX, &mut [0; 2]),
            Err(GateError::BadHandle)
        );
        assert_eq!(view.get(64), None);
        assert!(r.bytes(SharedBuf::from_parts(0, 8)).is_err());
        let ring = r.layout().channels_offset();
        assert!(r.bytes(SharedBuf::from_parts(ring as u32, 8)).is_err());
        assert!(r
            .bytes(SharedBuf::from_parts(heap.offset(), heap.size() + 1))
            .is_err());
    }

    #[test]
    fn bulk_copies_and_words() {
        let mut m = mapping(16);
        let size = m.len() * 4096;
        // SAFETY: `m` outlives the Region and is only used through it.
        let r = unsafe { Region::init(m.as_mut_ptr() as *mut u8, size, 1) }.unwrap();
        let heap = r.layout().channel_heap(0, 0);
        let view = r.bytes(SharedBuf::from_parts(heap.offset(), 256)).unwrap();
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
        view.copy_in(3, &src).unwrap();
        let mut back = std::vec![0u8; 200];
        view.copy_out(3, &mut back).unwrap();
        assert_eq!(back, src);
        view.read(3, &mut back).unwrap();
        assert_eq!(back, src);
        assert_eq!(view.copy_in(100, &src), Err(GateError::BadHandle));
        assert_eq!(view.copy_out(57, &mut back), Err(GateError::BadHandle));
        assert!(view.store_u64(248, 0x1122_3344_5566_7788));
        assert_eq!(view.load_u64(248), Some(0x1122_3344_5566_7788));
        assert_eq!(view.get(248), Some(0x88));
        assert!(!view.store_u64(252, 1), "misaligned");
        assert!(!view.store_u64(256, 1), "past the end");
        assert_eq!(view.load_u64(4), None);
        assert_eq!(view.load_u64(usize::MAX - 3), None);
    }
}
