//! Where everything lives inside the shared region. Pure arithmetic: the monitor and
//! every guest compute the same [`Layout`] from the region size and compartment count.
//!
//! ```text
//! 0                  Header (80 bytes, written by the monitor before any vCPU runs)
//! STATE_OFFSET (128) one 64-byte state line per compartment:
//!                      +0 dead: u32      (monitor: this compartment crashed)
//!                      +4 sleeping: u32  (the compartment itself, before it sleeps)
//!                      +8 ready: u32     (the compartment itself, once it serves)
//! rings_offset       one ring per ordered pair (caller, callee), caller != callee,
//!                    RING_SLOTS slots of 64 bytes each, in the order of ring_index()
//! heap_offset        (4 KiB aligned) one arena of arena_size bytes per compartment,
//!                    compartment 0 first; the tail that does not divide evenly is unused
//! ```

use crate::error::LayoutError;
use crate::MAX_COMPARTMENTS;

/// "FLEXSHM1" in little-endian ASCII, the first 8 bytes of the region.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FLEXSHM1");
/// Bumped on every incompatible change to the layout or the slot format.
pub const VERSION: u32 = 1;
/// Cache line size; every slot and every state line is one line.
pub const LINE: u64 = 64;
/// Slots per ring: the deepest nesting of calls on one (caller, callee) ring.
pub const RING_SLOTS: u32 = 16;
/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 80;
/// Offset of compartment 0's state line.
pub const STATE_OFFSET: u64 = 128;
/// Alignment of the heap and of every arena.
pub const ARENA_ALIGN: u64 = 4096;
/// Smallest arena a region must leave every compartment.
pub const MIN_ARENA: u64 = 4096;
/// Largest region: [`crate::SharedBuf`] offsets and lengths are u32.
pub const MAX_REGION: u64 = (1 << 32) - 4096;

/// Offset of the dead flag inside a state line.
const DEAD: u64 = 0;
/// Offset of the sleeping flag inside a state line.
const SLEEPING: u64 = 4;
/// Offset of the ready flag inside a state line.
const READY: u64 = 8;

const fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// The region header, as the monitor writes it at offset 0. Plain integers, no padding;
/// serialised little-endian by [`Header::to_bytes`] so no unsafe code is needed to
/// write it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub magic: u64,
    pub version: u32,
    pub compartments: u32,
    pub ring_slots: u32,
    /// Size of one slot (and of one state line): 64.
    pub slot_size: u32,
    pub region_size: u64,
    pub state_offset: u64,
    pub rings_offset: u64,
    pub rings_size: u64,
    pub heap_offset: u64,
    pub heap_size: u64,
    pub arena_size: u64,
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_SIZE);

impl Header {
    /// Number of u64 words in the header.
    pub const WORDS: usize = HEADER_SIZE / 8;

    /// The header as little-endian 64-bit words (two u32 fields share a word, the lower
    /// field in the low half), as laid out in memory.
    pub fn to_words(&self) -> [u64; Self::WORDS] {
        let pair = |lo: u32, hi: u32| lo as u64 | (hi as u64) << 32;
        [
            self.magic,
            pair(self.version, self.compartments),
            pair(self.ring_slots, self.slot_size),
            self.region_size,
            self.state_offset,
            self.rings_offset,
            self.rings_size,
            self.heap_offset,
            self.heap_size,
            self.arena_size,
        ]
    }

    /// Inverse of [`Header::to_words`].
    pub fn from_words(w: &[u64; Self::WORDS]) -> Header {
        Header {
            magic: w[0],
            version: w[1] as u32,
            compartments: (w[1] >> 32) as u32,
            ring_slots: w[2] as u32,
            slot_size: (w[2] >> 32) as u32,
            region_size: w[3],
            state_offset: w[4],
            rings_offset: w[5],
            rings_size: w[6],
            heap_offset: w[7],
            heap_size: w[8],
            arena_size: w[9],
        }
    }

    /// The bytes to write at offset 0 of the region.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        for (chunk, w) in out.chunks_exact_mut(8).zip(self.to_words()) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Inverse of [`Header::to_bytes`] (no validation: see [`Layout::from_header`]).
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Header {
        let mut w = [0u64; Self::WORDS];
        for (w, chunk) in w.iter_mut().zip(b.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(chunk);
            *w = u64::from_le_bytes(le);
        }
        Header::from_words(&w)
    }
}

/// The computed layout of a region: a pure function of its size and compartment count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    compartments: u32,
    region_size: u64,
    rings_offset: u64,
    rings_size: u64,
    heap_offset: u64,
    heap_size: u64,
    arena_size: u64,
}

impl Layout {
    /// Lays out a region of `region_size` bytes for `compartments` compartments.
    ///
    /// The size must be a multiple of 4 KiB, at most [`MAX_REGION`], and leave at least
    /// [`MIN_ARENA`] bytes of heap per compartment.
    #[inline]
    pub const fn new(region_size: u64, compartments: u32) -> Result<Layout, LayoutError> {
        if compartments == 0 || compartments as usize > MAX_COMPARTMENTS {
            return Err(LayoutError::BadCompartments(compartments));
        }
        if region_size % ARENA_ALIGN != 0 {
            return Err(LayoutError::Misaligned);
        }
        if region_size > MAX_REGION {
            return Err(LayoutError::TooLarge(region_size));
        }
        let n = compartments as u64;
        let rings_offset = align_up(STATE_OFFSET + n * LINE, LINE);
        let rings_size = n * (n - 1) * RING_SLOTS as u64 * LINE;
        let heap_offset = align_up(rings_offset + rings_size, ARENA_ALIGN);
        let need = heap_offset + n * MIN_ARENA;
        if region_size < need {
            return Err(LayoutError::TooSmall {
                need,
                have: region_size,
            });
        }
        let arena_size = (region_size - heap_offset) / n / ARENA_ALIGN * ARENA_ALIGN;
        Ok(Layout {
            compartments,
            region_size,
            rings_offset,
            rings_size,
            heap_offset,
            heap_size: arena_size * n,
            arena_size,
        })
    }

    /// Validates a header read from a region of `region_size` bytes: magic, version,
    /// and every field equal to what [`Layout::new`] computes.
    pub fn from_header(h: &Header, region_size: u64) -> Result<Layout, LayoutError> {
        if h.magic != MAGIC {
            return Err(LayoutError::BadMagic(h.magic));
        }
        if h.version != VERSION {
            return Err(LayoutError::BadVersion(h.version));
        }
        if h.region_size != region_size {
            return Err(LayoutError::Mismatch);
        }
        let layout = Layout::new(region_size, h.compartments)?;
        if layout.header() != *h {
            return Err(LayoutError::Mismatch);
        }
        Ok(layout)
    }

    /// The header describing this layout.
    #[inline]
    pub const fn header(&self) -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            compartments: self.compartments,
            ring_slots: RING_SLOTS,
            slot_size: LINE as u32,
            region_size: self.region_size,
            state_offset: STATE_OFFSET,
            rings_offset: self.rings_offset,
            rings_size: self.rings_size,
            heap_offset: self.heap_offset,
            heap_size: self.heap_size,
            arena_size: self.arena_size,
        }
    }

    #[inline]
    pub const fn compartments(&self) -> u32 {
        self.compartments
    }

    #[inline]
    pub const fn region_size(&self) -> u64 {
        self.region_size
    }

    #[inline]
    pub const fn rings_offset(&self) -> u64 {
        self.rings_offset
    }

    #[inline]
    pub const fn rings_size(&self) -> u64 {
        self.rings_size
    }

    #[inline]
    pub const fn heap_offset(&self) -> u64 {
        self.heap_offset
    }

    #[inline]
    pub const fn heap_size(&self) -> u64 {
        self.heap_size
    }

    #[inline]
    pub const fn arena_size(&self) -> u64 {
        self.arena_size
    }

    /// Byte offset of `compartment`'s state line. Panics if it is out of range.
    #[inline]
    pub const fn state_offset(&self, compartment: u32) -> u64 {
        assert!(compartment < self.compartments, "compartment out of range");
        STATE_OFFSET + compartment as u64 * LINE
    }

    /// Byte offset (inside the region) of `compartment`'s u32 dead flag. The monitor
    /// stores 1 there (atomically, e.g. vm-memory's `GuestMemory::store`) when the
    /// compartment crashed. Panics if the compartment is out of range.
    #[inline]
    pub const fn dead_flag_offset(&self, compartment: u32) -> u64 {
        self.state_offset(compartment) + DEAD
    }

    /// Byte offset of `compartment`'s u32 sleeping flag.
    #[inline]
    pub const fn sleeping_flag_offset(&self, compartment: u32) -> u64 {
        self.state_offset(compartment) + SLEEPING
    }

    /// Byte offset of `compartment`'s u32 ready flag.
    #[inline]
    pub const fn ready_flag_offset(&self, compartment: u32) -> u64 {
        self.state_offset(compartment) + READY
    }

    /// Position of the ring `caller -> callee` among all rings. Panics unless both are
    /// in range and different.
    #[inline]
    pub const fn ring_index(&self, caller: u32, callee: u32) -> u64 {
        assert!(caller < self.compartments && callee < self.compartments && caller != callee);
        let j = if callee < caller { callee } else { callee - 1 };
        caller as u64 * (self.compartments as u64 - 1) + j as u64
    }

    /// Byte offset of slot `index % RING_SLOTS` of the ring `caller -> callee`.
    #[inline]
    pub const fn slot_offset(&self, caller: u32, callee: u32, index: u32) -> u64 {
        self.rings_offset
            + (self.ring_index(caller, callee) * RING_SLOTS as u64 + (index % RING_SLOTS) as u64)
                * LINE
    }

    /// The heap as seen by validation.
    #[inline]
    pub const fn heap_bounds(&self) -> HeapBounds {
        HeapBounds {
            offset: self.heap_offset as u32,
            size: self.heap_size as u32,
            arena_size: self.arena_size as u32,
            compartments: self.compartments,
        }
    }
}

/// The shared heap's bounds (region offsets), against which every
/// [`crate::SharedBuf`] from a peer is checked. Taken from the validated private
/// [`Layout`], never re-read from shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapBounds {
    offset: u32,
    size: u32,
    arena_size: u32,
    compartments: u32,
}

impl HeapBounds {
    /// Region offset of the heap's first byte.
    #[inline]
    pub const fn offset(&self) -> u32 {
        self.offset
    }

    /// Heap size in bytes (all arenas).
    #[inline]
    pub const fn size(&self) -> u32 {
        self.size
    }

    /// Does `offset .. offset + len` (region offsets) lie inside the heap?
    #[inline]
    pub const fn contains(&self, offset: u32, len: u32) -> bool {
        let start = offset as u64;
        let end = start + len as u64;
        start >= self.offset as u64 && end <= self.offset as u64 + self.size as u64
    }

    /// `(offset, size)` of `compartment`'s arena, or `None` if out of range.
    #[inline]
    pub const fn arena(&self, compartment: u32) -> Option<(u32, u32)> {
        if compartment >= self.compartments {
            return None;
        }
        Some((self.offset + compartment * self.arena_size, self.arena_size))
    }

    /// The compartment whose arena wholly holds `offset .. offset + len`, if any.
    /// An empty range belongs to the arena its offset falls in.
    #[inline]
    pub const fn owner(&self, offset: u32, len: u32) -> Option<u32> {
        if !self.contains(offset, len) || offset - self.offset >= self.size {
            return None;
        }
        let c = (offset - self.offset) / self.arena_size;
        let arena_end = self.offset as u64 + (c as u64 + 1) * self.arena_size as u64;
        if offset as u64 + len as u64 <= arena_end {
            Some(c)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn header_is_plain() {
        assert_eq!(core::mem::size_of::<Header>(), HEADER_SIZE);
        assert_eq!(core::mem::align_of::<Header>(), 8);
        let h = Layout::new(16 * MIB, 4).unwrap().header();
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
        assert_eq!(&h.to_bytes()[..8], b"FLEXSHM1");
        assert_eq!(Header::from_words(&h.to_words()), h);
    }

    #[test]
    fn deterministic_and_disjoint() {
        for n in 1..=MAX_COMPARTMENTS as u32 {
            let a = Layout::new(16 * MIB, n).unwrap();
            let b = Layout::new(16 * MIB, n).unwrap();
            assert_eq!(a, b);
            assert!(a.state_offset(n - 1) + LINE <= a.rings_offset());
            assert!(a.rings_offset() + a.rings_size() <= a.heap_offset());
            assert_eq!(a.heap_offset() % ARENA_ALIGN, 0);
            assert_eq!(a.arena_size() % ARENA_ALIGN, 0);
            assert!(a.heap_offset() + a.heap_size() <= a.region_size());
            assert_eq!(a.heap_size(), a.arena_size() * n as u64);
            // Every slot of every ring is distinct and inside the rings area.
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..n {
                for j in 0..n {
                    if i == j {
                        continue;
                    }
                    for k in 0..RING_SLOTS {
                        let o = a.slot_offset(i, j, k);
                        assert!(o >= a.rings_offset());
                        assert!(o + LINE <= a.rings_offset() + a.rings_size());
                        assert_eq!(o % LINE, 0);
                        assert!(seen.insert(o));
                    }
                }
            }
            assert_eq!(seen.len() as u64 * LINE, a.rings_size());
            assert_eq!(Layout::from_header(&a.header(), 16 * MIB), Ok(a));
        }
    }

    #[test]
    fn pinned_offsets() {
        // The monitor and the guest must agree on these numbers; changing them is a
        // VERSION bump.
        let l = Layout::new(16 * MIB, 2).unwrap();
        assert_eq!(l.dead_flag_offset(0), 128);
        assert_eq!(l.sleeping_flag_offset(0), 132);
        assert_eq!(l.dead_flag_offset(1), 192);
        assert_eq!(l.rings_offset(), 256);
        assert_eq!(l.rings_size(), 2 * 16 * 64);
        assert_eq!(l.heap_offset(), 4096);
        assert_eq!(l.arena_size(), (16 * MIB - 4096) / 2 / 4096 * 4096);
        assert_eq!(l.slot_offset(1, 0, 17), 256 + (16 + 1) * 64);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(Layout::new(MIB, 0), Err(LayoutError::BadCompartments(0)));
        assert_eq!(Layout::new(MIB, 17), Err(LayoutError::BadCompartments(17)));
        assert_eq!(Layout::new(MIB + 64, 2), Err(LayoutError::Misaligned));
        assert_eq!(Layout::new(1 << 32, 2), Err(LayoutError::TooLarge(1 << 32)));
        assert!(matches!(
            Layout::new(4096, 1),
            Err(LayoutError::TooSmall { .. })
        ));
        assert!(Layout::new(8192, 1).is_ok());
        assert!(Layout::new(MAX_REGION, 16).is_ok());
        assert!(matches!(
            Layout::new(64 * 1024, 16),
            Err(LayoutError::TooSmall { .. })
        ));
    }

    #[test]
    fn rejects_bad_headers() {
        let l = Layout::new(MIB, 3).unwrap();
        let good = l.header();
        let mut h = good;
        h.magic ^= 1;
        assert_eq!(
            Layout::from_header(&h, MIB),
            Err(LayoutError::BadMagic(h.magic))
        );
        let mut h = good;
        h.version = 2;
        assert_eq!(
            Layout::from_header(&h, MIB),
            Err(LayoutError::BadVersion(2))
        );
        assert_eq!(
            Layout::from_header(&good, 2 * MIB),
            Err(LayoutError::Mismatch)
        );
        let mut h = good;
        h.heap_offset += 4096;
        assert_eq!(Layout::from_header(&h, MIB), Err(LayoutError::Mismatch));
        let mut h = good;
        h.compartments = 99;
        assert_eq!(
            Layout::from_header(&h, MIB),
            Err(LayoutError::BadCompartments(99))
        );
        let mut h = good;
        h.compartments = 2;
        assert_eq!(Layout::from_header(&h, MIB), Err(LayoutError::Mismatch));
        let mut h = good;
        h.ring_slots = 8;
        assert_eq!(Layout::from_header(&h, MIB), Err(LayoutError::Mismatch));
    }

    #[test]
    fn heap_bounds() {
        let l = Layout::new(MIB, 2).unwrap();
        let hb = l.heap_bounds();
        let o = l.heap_offset() as u32;
        let a = l.arena_size() as u32;
        assert!(hb.contains(o, 0));
        assert!(hb.contains(o, 2 * a));
        assert!(!hb.contains(o, 2 * a + 1));
        assert!(!hb.contains(o - 1, 1));
        assert!(!hb.contains(u32::MAX, u32::MAX));
        assert_eq!(hb.owner(o, a), Some(0));
        assert_eq!(hb.owner(o + a - 1, 2), None);
        assert_eq!(hb.owner(o + a, a), Some(1));
        assert_eq!(hb.owner(o + 2 * a, 0), None);
        assert_eq!(hb.arena(1), Some((o + a, a)));
        assert_eq!(hb.arena(2), None);
    }
}
