//! Where everything lives inside the shared region. Pure arithmetic: the monitor and
//! every guest compute the same [`Layout`] from the region size and compartment count.
//!
//! The region is cut on page boundaries so that the monitor can give each compartment
//! exactly the pages it is a party to, with the right permission (docs/design.md, one VM per compartment,
//! "least privilege in the shared area"):
//!
//! ```text
//! 0                    header page, written by the monitor only, read-only to guests:
//!                        0    Header (80 bytes)
//!                        128  DEAD_OFFSET: one u32 dead flag per compartment
//! PAGE                 one state page per compartment (owner read/write, others
//!                      read-only):  +0 sleeping: u32, +4 ready: u32
//! channels_offset      one channel per unordered pair (a, b) with a <= b, in the order
//!                      of channel_index(); a channel is mapped into a's and b's VMs
//!                      only (a == b: a compartment's own channel, for data that stays
//!                      inside it but must be addressable as a SharedBuf):
//!                        +0                 ring a -> b  (RING_SLOTS slots of 64 bytes)
//!                        +RING_BYTES        ring b -> a
//!                        +PAGE              heap: a's arena, then b's arena, each
//!                                           arena_size bytes (a == b: one arena of
//!                                           twice that)
//! ```
//!
//! A compartment's own channels `(c, c), (c, c+1), ..` are adjacent, so a compartment
//! needs one memory slot for those plus one per lower-numbered peer.

use core::ops::Range;

use crate::error::LayoutError;

/// Most compartments one region serves: the dead flags of the header page, the state
/// pages and the channels are laid out for at most this many, and every
/// [`crate::Endpoint`] keeps per-peer state in arrays of this length.
///
/// This is the one definition. The monitor and the guest take it from here; the abi
/// crate, which depends on nothing, repeats the value as `flexos_abi::MAX_COMPARTMENTS`
/// (the width of its component table's splits, an ELF format) and its tests check
/// that the two agree, as does a const assertion in the guest kernel.
pub const MAX_COMPARTMENTS: usize = 16;

/// "FLEXSHM1" in little-endian ASCII, the first 8 bytes of the region.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FLEXSHM1");
/// Bumped on every incompatible change to the layout or the slot format.
pub const VERSION: u32 = 2;
/// Cache line size; every slot is one line.
pub const LINE: u64 = 64;
/// The unit of protection: the monitor maps the region in pages of this size.
pub const PAGE: u64 = 4096;
/// Slots per ring: the deepest nesting of calls on one (caller, callee) ring.
pub const RING_SLOTS: u32 = 16;
/// Bytes of one ring.
pub const RING_BYTES: u64 = RING_SLOTS as u64 * LINE;
/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 80;
/// Offset of compartment 0's dead flag (a u32 per compartment) in the header page.
pub const DEAD_OFFSET: u64 = 128;
/// Offset of compartment 0's state page.
pub const STATES_OFFSET: u64 = PAGE;
/// Alignment of the heap and of every arena.
pub const ARENA_ALIGN: u64 = PAGE;
/// Smallest arena a region must leave every compartment in every channel.
pub const MIN_ARENA: u64 = PAGE;
/// Largest region: [`crate::SharedBuf`] offsets and lengths are u32.
pub const MAX_REGION: u64 = (1 << 32) - PAGE;

/// Offset of the sleeping flag inside a state page.
const SLEEPING: u64 = 0;
/// Offset of the ready flag inside a state page.
const READY: u64 = 4;
/// Offset of the heap inside a channel.
const CHANNEL_HEAP: u64 = PAGE;

const _: () = assert!(2 * RING_BYTES <= CHANNEL_HEAP);
const _: () = assert!(DEAD_OFFSET + 4 * MAX_COMPARTMENTS as u64 <= PAGE);
const _: () = assert!(HEADER_SIZE as u64 <= DEAD_OFFSET);

/// Number of channels for `n` compartments: one per unordered pair, self-pairs included.
pub const fn channel_count(n: u32) -> u32 {
    n * (n + 1) / 2
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
    /// Size of one slot: 64.
    pub slot_size: u32,
    pub region_size: u64,
    pub dead_offset: u64,
    pub states_offset: u64,
    pub channels_offset: u64,
    pub channel_size: u64,
    pub channel_heap_offset: u64,
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
            self.dead_offset,
            self.states_offset,
            self.channels_offset,
            self.channel_size,
            self.channel_heap_offset,
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
            dead_offset: w[4],
            states_offset: w[5],
            channels_offset: w[6],
            channel_size: w[7],
            channel_heap_offset: w[8],
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
    channels_offset: u64,
    channel_size: u64,
    arena_size: u64,
}

/// What a part of the region is, for one compartment: see [`Layout::parts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Region offsets (page aligned).
    pub range: Range<u64>,
    pub kind: PartKind,
}

/// The kinds of page ranges in a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartKind {
    /// The header page (header and dead flags): the monitor's, read-only to guests.
    Header,
    /// A compartment's state page.
    State(u32),
    /// The channel of compartments `a <= b`.
    Channel(u32, u32),
    /// Past the last channel: not part of the layout.
    Unused,
}

impl Layout {
    /// Lays out a region of `region_size` bytes for `compartments` compartments.
    ///
    /// The size must be a multiple of 4 KiB, at most [`MAX_REGION`], and leave every
    /// channel its rings and at least [`MIN_ARENA`] bytes of heap per side.
    #[inline]
    pub const fn new(region_size: u64, compartments: u32) -> Result<Layout, LayoutError> {
        if compartments == 0 || compartments as usize > MAX_COMPARTMENTS {
            return Err(LayoutError::BadCompartments(compartments));
        }
        if region_size % PAGE != 0 {
            return Err(LayoutError::Misaligned);
        }
        if region_size > MAX_REGION {
            return Err(LayoutError::TooLarge(region_size));
        }
        let n = compartments as u64;
        let channels_offset = STATES_OFFSET + n * PAGE;
        let channels = channel_count(compartments) as u64;
        let need = channels_offset + channels * (CHANNEL_HEAP + 2 * MIN_ARENA);
        if region_size < need {
            return Err(LayoutError::TooSmall {
                need,
                have: region_size,
            });
        }
        let per_channel = (region_size - channels_offset) / channels;
        let arena_size = (per_channel - CHANNEL_HEAP) / 2 / ARENA_ALIGN * ARENA_ALIGN;
        Ok(Layout {
            compartments,
            region_size,
            channels_offset,
            channel_size: CHANNEL_HEAP + 2 * arena_size,
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
            dead_offset: DEAD_OFFSET,
            states_offset: STATES_OFFSET,
            channels_offset: self.channels_offset,
            channel_size: self.channel_size,
            channel_heap_offset: CHANNEL_HEAP,
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
    pub const fn channels_offset(&self) -> u64 {
        self.channels_offset
    }

    #[inline]
    pub const fn channel_size(&self) -> u64 {
        self.channel_size
    }

    /// Bytes of one compartment's arena in a channel with a peer.
    #[inline]
    pub const fn arena_size(&self) -> u64 {
        self.arena_size
    }

    /// End of the last channel; the rest of the region (less than a channel) is unused.
    #[inline]
    pub const fn channels_end(&self) -> u64 {
        self.channels_offset + channel_count(self.compartments) as u64 * self.channel_size
    }

    /// Byte offset of `compartment`'s state page. Panics if it is out of range.
    #[inline]
    pub const fn state_offset(&self, compartment: u32) -> u64 {
        assert!(compartment < self.compartments, "compartment out of range");
        STATES_OFFSET + compartment as u64 * PAGE
    }

    /// Byte offset (inside the region) of `compartment`'s u32 dead flag, in the header
    /// page. The monitor stores 1 there (atomically, e.g. vm-memory's
    /// `GuestMemory::store`) when the compartment crashed. Panics if the compartment is
    /// out of range.
    #[inline]
    pub const fn dead_flag_offset(&self, compartment: u32) -> u64 {
        assert!(compartment < self.compartments, "compartment out of range");
        DEAD_OFFSET + 4 * compartment as u64
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

    /// Position of the channel of `a` and `b` (in either order) among all channels.
    /// Pairs are ordered `(0,0), (0,1) .. (0,n-1), (1,1), (1,2) ..`. Panics unless both
    /// are in range.
    #[inline]
    pub const fn channel_index(&self, a: u32, b: u32) -> u64 {
        assert!(a < self.compartments && b < self.compartments);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let n = self.compartments as u64;
        let lo = lo as u64;
        // Channels of the rows before `lo`: n + (n-1) + .. + (n-lo+1).
        lo * n - lo * (lo.saturating_sub(1)) / 2 + (hi as u64 - lo)
    }

    /// Region offsets of the channel of `a` and `b` (in either order).
    #[inline]
    pub const fn channel(&self, a: u32, b: u32) -> Range<u64> {
        let start = self.channels_offset + self.channel_index(a, b) * self.channel_size;
        start..start + self.channel_size
    }

    /// Byte offset of slot `index % RING_SLOTS` of the ring `caller -> callee`, inside
    /// their channel. Panics unless both are in range and different.
    #[inline]
    pub const fn slot_offset(&self, caller: u32, callee: u32, index: u32) -> u64 {
        assert!(caller != callee);
        let ring = if caller < callee { 0 } else { RING_BYTES };
        self.channel(caller, callee).start + ring + (index % RING_SLOTS) as u64 * LINE
    }

    /// The heap of the channel of `a` and `b`: what a handle passed between them must
    /// lie in. Out-of-range compartments get an empty heap that contains nothing.
    #[inline]
    pub const fn channel_heap(&self, a: u32, b: u32) -> HeapBounds {
        if a >= self.compartments || b >= self.compartments {
            return HeapBounds::EMPTY;
        }
        let start = self.channel(a, b).start + CHANNEL_HEAP;
        HeapBounds {
            offset: start as u32,
            size: (2 * self.arena_size) as u32,
        }
    }

    /// `(offset, size)` of the arena `owner` allocates from for data it passes to
    /// `peer` (`peer == owner`: data that stays in the compartment). `None` if either
    /// is out of range.
    #[inline]
    pub const fn arena(&self, owner: u32, peer: u32) -> Option<(u32, u32)> {
        if owner >= self.compartments || peer >= self.compartments {
            return None;
        }
        let heap = self.channel_heap(owner, peer);
        if owner == peer {
            Some((heap.offset, heap.size))
        } else if owner < peer {
            Some((heap.offset, self.arena_size as u32))
        } else {
            Some((heap.offset + self.arena_size as u32, self.arena_size as u32))
        }
    }

    /// Is `offset .. offset + len` inside the heap of some channel? (What any
    /// compartment may name as shared bytes; which channels it can actually reach is
    /// the monitor's business.)
    #[inline]
    pub const fn in_some_heap(&self, offset: u32, len: u32) -> bool {
        let off = offset as u64;
        if off < self.channels_offset || off >= self.channels_end() {
            return false;
        }
        let rel = (off - self.channels_offset) % self.channel_size;
        let start = off - rel;
        HeapBounds {
            offset: (start + CHANNEL_HEAP) as u32,
            size: (2 * self.arena_size) as u32,
        }
        .contains(offset, len)
    }

    /// The region as sorted, contiguous, page-aligned parts that cover it, each with
    /// what it is; [`Layout::access`] says what a compartment may do with each.
    pub fn parts(&self) -> PartsIter {
        PartsIter {
            layout: *self,
            next: 0,
        }
    }

    /// What `compartment` may do with region offset `offset`.
    #[inline]
    pub fn access(&self, compartment: u32, offset: u64) -> Access {
        if offset < STATES_OFFSET {
            return Access::Read;
        }
        if offset < self.channels_offset {
            let owner = ((offset - STATES_OFFSET) / PAGE) as u32;
            return if owner == compartment {
                Access::Write
            } else {
                Access::Read
            };
        }
        match self.channel_at(offset) {
            Some((a, b)) if a == compartment || b == compartment => Access::Write,
            _ => Access::None,
        }
    }

    /// The pair whose channel holds region offset `offset`, if any.
    pub fn channel_at(&self, offset: u64) -> Option<(u32, u32)> {
        if offset < self.channels_offset || offset >= self.channels_end() {
            return None;
        }
        let mut index = (offset - self.channels_offset) / self.channel_size;
        let n = self.compartments;
        for a in 0..n {
            let row = (n - a) as u64;
            if index < row {
                return Some((a, a + index as u32));
            }
            index -= row;
        }
        None
    }
}

/// What a compartment may do with a page of the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Not mapped for it at all.
    None,
    /// Read-only: the header, dead flags and other compartments' state pages.
    Read,
    /// Read and write: its own state page and the channels it is a party to.
    Write,
}

/// Iterator behind [`Layout::parts`]: the header page, each state page, each channel,
/// then the unused tail.
pub struct PartsIter {
    layout: Layout,
    next: u64,
}

impl Iterator for PartsIter {
    type Item = Part;

    fn next(&mut self) -> Option<Part> {
        let l = &self.layout;
        let at = self.next;
        if at >= l.region_size {
            return None;
        }
        let part = if at < STATES_OFFSET {
            Part {
                range: 0..STATES_OFFSET,
                kind: PartKind::Header,
            }
        } else if at < l.channels_offset {
            let c = ((at - STATES_OFFSET) / PAGE) as u32;
            Part {
                range: at..at + PAGE,
                kind: PartKind::State(c),
            }
        } else if let Some(pair) = l.channel_at(at) {
            Part {
                range: l.channel(pair.0, pair.1),
                kind: PartKind::Channel(pair.0, pair.1),
            }
        } else {
            Part {
                range: at..l.region_size,
                kind: PartKind::Unused,
            }
        };
        self.next = part.range.end;
        Some(part)
    }
}

/// The heap of one channel (region offsets), against which every [`crate::SharedBuf`]
/// from the peer on that channel is checked. Taken from the validated private
/// [`Layout`], never re-read from shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapBounds {
    offset: u32,
    size: u32,
}

impl HeapBounds {
    /// A heap that contains nothing (no channel).
    pub const EMPTY: HeapBounds = HeapBounds { offset: 0, size: 0 };

    /// Region offset of the heap's first byte.
    #[inline]
    pub const fn offset(&self) -> u32 {
        self.offset
    }

    /// Heap size in bytes (both arenas of the channel).
    #[inline]
    pub const fn size(&self) -> u32 {
        self.size
    }

    /// Does `offset .. offset + len` (region offsets) lie inside the heap? Never for
    /// [`HeapBounds::EMPTY`].
    #[inline]
    pub const fn contains(&self, offset: u32, len: u32) -> bool {
        let start = offset as u64;
        let end = start + len as u64;
        self.size != 0
            && start >= self.offset as u64
            && end <= self.offset as u64 + self.size as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    /// Every compartment count; under Miri (far slower) the small ones and the largest.
    fn compartment_counts() -> Vec<u32> {
        if cfg!(miri) {
            std::vec![1, 2, 3, MAX_COMPARTMENTS as u32]
        } else {
            (1..=MAX_COMPARTMENTS as u32).collect()
        }
    }

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
    fn channel_indices_are_dense_and_symmetric() {
        for n in 1..=MAX_COMPARTMENTS as u32 {
            let l = Layout::new(MAX_REGION, n).unwrap();
            let mut expected = 0;
            for a in 0..n {
                for b in a..n {
                    assert_eq!(l.channel_index(a, b), expected, "n {n} ({a},{b})");
                    assert_eq!(l.channel_index(b, a), expected);
                    assert_eq!(l.channel_at(l.channel(a, b).start), Some((a, b)));
                    assert_eq!(l.channel_at(l.channel(a, b).end - 1), Some((a, b)));
                    expected += 1;
                }
            }
            assert_eq!(expected, channel_count(n) as u64);
            assert_eq!(l.channel_at(l.channels_end()), None);
        }
    }

    #[test]
    fn deterministic_and_disjoint() {
        for n in compartment_counts() {
            let a = Layout::new(16 * MIB, n).unwrap();
            assert_eq!(a, Layout::new(16 * MIB, n).unwrap());
            assert_eq!(a.channels_offset() % PAGE, 0);
            assert_eq!(a.channel_size() % PAGE, 0);
            assert!(a.arena_size() >= MIN_ARENA);
            assert!(a.channels_end() <= a.region_size());
            // Every slot of every ring is distinct, line-aligned, and in the rings page
            // of its pair's channel.
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..n {
                for j in 0..n {
                    if i == j {
                        continue;
                    }
                    let ch = a.channel(i, j);
                    for k in 0..RING_SLOTS {
                        let o = a.slot_offset(i, j, k);
                        assert!(o >= ch.start && o + LINE <= ch.start + CHANNEL_HEAP);
                        assert_eq!(o % LINE, 0);
                        assert!(seen.insert(o));
                    }
                }
                // Arenas: inside the channel heap, page aligned, disjoint per side.
                for j in 0..n {
                    let heap = a.channel_heap(i, j);
                    let (off, size) = a.arena(i, j).unwrap();
                    assert!(heap.contains(off, size));
                    assert_eq!(off as u64 % ARENA_ALIGN, 0);
                    if i != j {
                        let (peer_off, _) = a.arena(j, i).unwrap();
                        assert_ne!(off, peer_off);
                        assert_eq!(heap.size(), 2 * size);
                    } else {
                        assert_eq!(heap.size(), size);
                    }
                    assert!(a.in_some_heap(off, size));
                    assert!(
                        !a.in_some_heap(heap.offset() - 1, 1),
                        "the rings page is no heap"
                    );
                }
            }
            assert_eq!(Layout::from_header(&a.header(), 16 * MIB), Ok(a));
        }
    }

    #[test]
    fn parts_cover_the_region_and_each_compartment_reaches_exactly_its_pairs() {
        for n in [1u32, 2, 3, 4, MAX_COMPARTMENTS as u32] {
            let l = Layout::new(16 * MIB, n).unwrap();
            let parts: Vec<Part> = l.parts().collect();
            assert_eq!(parts[0].range.start, 0);
            assert_eq!(parts.last().unwrap().range.end, l.region_size());
            for w in parts.windows(2) {
                assert_eq!(w[0].range.end, w[1].range.start);
            }
            for p in &parts {
                assert_eq!(p.range.start % PAGE, 0);
                assert_eq!(p.range.end % PAGE, 0);
            }
            for me in 0..n {
                let mut channels = Vec::new();
                for p in &parts {
                    let access = l.access(me, p.range.start);
                    assert_eq!(access, l.access(me, p.range.end - 1), "{p:?}");
                    match p.kind {
                        PartKind::Header => assert_eq!(access, Access::Read),
                        PartKind::State(c) if c == me => assert_eq!(access, Access::Write),
                        PartKind::State(_) => assert_eq!(access, Access::Read),
                        PartKind::Channel(a, b) => {
                            if access == Access::Write {
                                channels.push((a, b));
                            } else {
                                assert_eq!(access, Access::None);
                            }
                        }
                        PartKind::Unused => assert_eq!(access, Access::None),
                    }
                }
                let want: Vec<(u32, u32)> = (0..n).map(|p| (p.min(me), p.max(me))).collect();
                let mut got = channels.clone();
                got.sort();
                let mut want_sorted = want.clone();
                want_sorted.sort();
                assert_eq!(got, want_sorted, "compartment {me} of {n}");
            }
        }
    }

    #[test]
    fn pinned_offsets() {
        // The monitor and the guest must agree on these numbers; changing them is a
        // VERSION bump.
        let l = Layout::new(16 * MIB, 2).unwrap();
        assert_eq!(l.dead_flag_offset(0), 128);
        assert_eq!(l.dead_flag_offset(1), 132);
        assert_eq!(l.sleeping_flag_offset(0), 4096);
        assert_eq!(l.ready_flag_offset(1), 8192 + 4);
        assert_eq!(l.channels_offset(), 3 * 4096);
        // Channels (0,0), (0,1), (1,1).
        let per = (16 * MIB - 3 * 4096) / 3;
        assert_eq!(l.arena_size(), (per - 4096) / 2 / 4096 * 4096);
        assert_eq!(l.channel(0, 1).start, 3 * 4096 + l.channel_size());
        assert_eq!(l.slot_offset(0, 1, 17), l.channel(0, 1).start + 64);
        assert_eq!(l.slot_offset(1, 0, 0), l.channel(0, 1).start + 1024);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(Layout::new(MIB, 0), Err(LayoutError::BadCompartments(0)));
        assert_eq!(Layout::new(MIB, 17), Err(LayoutError::BadCompartments(17)));
        assert_eq!(Layout::new(MIB + 64, 2), Err(LayoutError::Misaligned));
        assert_eq!(Layout::new(1 << 32, 2), Err(LayoutError::TooLarge(1 << 32)));
        assert!(matches!(
            Layout::new(4 * 4096, 1),
            Err(LayoutError::TooSmall { .. })
        ));
        assert!(Layout::new(5 * 4096, 1).is_ok());
        assert!(Layout::new(MAX_REGION, 16).is_ok());
        assert!(Layout::new(16 * MIB, 16).is_ok());
        assert!(matches!(
            Layout::new(MIB, 16),
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
        h.version = 1;
        assert_eq!(
            Layout::from_header(&h, MIB),
            Err(LayoutError::BadVersion(1))
        );
        assert_eq!(
            Layout::from_header(&good, 2 * MIB),
            Err(LayoutError::Mismatch)
        );
        let mut h = good;
        h.channel_size += 4096;
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
        let hb = l.channel_heap(1, 0);
        assert_eq!(hb, l.channel_heap(0, 1));
        let o = hb.offset();
        let a = l.arena_size() as u32;
        assert!(hb.contains(o, 0));
        assert!(hb.contains(o, 2 * a));
        assert!(!hb.contains(o, 2 * a + 1));
        assert!(!hb.contains(o - 1, 1));
        assert!(!hb.contains(u32::MAX, u32::MAX));
        assert_eq!(l.arena(0, 1), Some((o, a)));
        assert_eq!(l.arena(1, 0), Some((o + a, a)));
        assert_eq!(l.arena(2, 0), None);
        assert!(!l.channel_heap(0, 0).contains(o, 1), "another channel");
        assert!(!HeapBounds::EMPTY.contains(0, 0));
        assert_eq!(l.channel_heap(0, 7), HeapBounds::EMPTY);
    }
}
