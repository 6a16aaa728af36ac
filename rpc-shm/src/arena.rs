//! [`Arena`]: the allocator of one compartment's arena in one channel's heap (data it
//! passes to that channel's peer, or keeps to itself in its own channel).
//!
//! All of its metadata (two bitmaps) lives in the `Arena` value itself, i.e. in the
//! owner's private memory: peers can scribble over the arena's bytes, never over its
//! bookkeeping. Blocks are at least 64 bytes (one cache line, so two allocations never
//! share a line or a heap word); larger arenas use larger blocks so the bitmaps keep a
//! fixed size.

use crate::error::{GateError, LayoutError};
use crate::gate::SharedBuf;
use crate::layout::Layout;

/// Bitmap words: at most `ARENA_WORDS * 64` blocks per arena.
pub const ARENA_WORDS: usize = 1024;
/// Most blocks an arena is split into.
pub const MAX_BLOCKS: u32 = (ARENA_WORDS * 64) as u32;
/// Smallest block (and allocation granule).
pub const MIN_BLOCK: u32 = 64;

/// Allocator over one compartment's arena (single-threaded, like its compartment).
/// About 16 KiB: keep it in a static or on the heap of the owner.
pub struct Arena {
    /// Region offset of the first block.
    start: u32,
    /// log2 of the block size.
    shift: u32,
    blocks: u32,
    free: u32,
    /// Where the next search starts.
    hint: u32,
    /// Bit b: block b is allocated.
    used: [u64; ARENA_WORDS],
    /// Bit b: an allocation starts at block b.
    starts: [u64; ARENA_WORDS],
}

impl Arena {
    /// The allocator of `owner`'s arena in its channel with `peer` (`peer == owner`:
    /// its own channel).
    pub fn new(layout: &Layout, owner: u32, peer: u32) -> Result<Arena, LayoutError> {
        let (start, size) = layout
            .arena(owner, peer)
            .ok_or(LayoutError::BadCompartments(owner.max(peer)))?;
        let mut shift = MIN_BLOCK.trailing_zeros();
        while (size >> shift) > MAX_BLOCKS {
            shift += 1;
        }
        let blocks = size >> shift;
        Ok(Arena {
            start,
            shift,
            blocks,
            free: blocks,
            hint: 0,
            used: [0; ARENA_WORDS],
            starts: [0; ARENA_WORDS],
        })
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        1 << self.shift
    }

    /// Free bytes (not necessarily contiguous).
    pub fn available(&self) -> u64 {
        (self.free as u64) << self.shift
    }

    /// Does `buf` lie inside this arena?
    pub fn contains(&self, buf: SharedBuf) -> bool {
        let end = self.start as u64 + ((self.blocks as u64) << self.shift);
        buf.offset() >= self.start && buf.offset() as u64 + buf.len() as u64 <= end
    }

    fn bit(map: &[u64; ARENA_WORDS], b: u32) -> bool {
        map[(b / 64) as usize] & 1 << (b % 64) != 0
    }

    /// Sets or clears bits `from .. from + n` of `used`.
    fn mark(&mut self, from: u32, n: u32, set: bool) {
        let mut b = from;
        let end = from + n;
        while b < end {
            let bit = b % 64;
            let take = (64 - bit).min(end - b);
            let mask = (u64::MAX >> (64 - take)) << bit;
            let w = &mut self.used[(b / 64) as usize];
            if set {
                *w |= mask;
            } else {
                *w &= !mask;
            }
            b += take;
        }
    }

    /// First run of `n` free blocks starting in `from .. to` and ending by `to`.
    fn find(&self, from: u32, to: u32, n: u32) -> Option<u32> {
        let mut i = from;
        let mut run = 0;
        while i < to {
            let bit = i % 64;
            let avail = (64 - bit).min(to - i);
            let word = self.used[(i / 64) as usize] >> bit;
            let free = word.trailing_zeros().min(avail);
            run += free;
            if run >= n {
                return Some(i + free - run);
            }
            if free == avail {
                i += avail;
                continue;
            }
            // Skip the allocated blocks that follow.
            let busy = (!(word >> free)).trailing_zeros();
            i += free + busy;
            run = 0;
        }
        None
    }

    /// Allocates `len` bytes (rounded up to whole blocks, block-aligned). `None` if
    /// `len` is 0 or does not fit.
    pub fn alloc(&mut self, len: usize) -> Option<SharedBuf> {
        let len = u32::try_from(len).ok().filter(|&l| l > 0)?;
        let n = len.div_ceil(self.block_size());
        if n > self.free {
            return None;
        }
        let first = self
            .find(self.hint, self.blocks, n)
            .or_else(|| self.find(0, self.blocks, n))?;
        self.mark(first, n, true);
        self.starts[(first / 64) as usize] |= 1 << (first % 64);
        self.free -= n;
        self.hint = first + n;
        Some(SharedBuf::from_parts(
            self.start + (first << self.shift),
            len,
        ))
    }

    /// Frees a buffer this arena allocated. Refuses ([`GateError::BadHandle`]) anything
    /// else: a buffer outside the arena, not at the start of an allocation, with a
    /// length that does not match, or already freed.
    pub fn free(&mut self, buf: SharedBuf) -> Result<(), GateError> {
        if !self.contains(buf) || buf.is_empty() {
            return Err(GateError::BadHandle);
        }
        let rel = buf.offset() - self.start;
        if rel & (self.block_size() - 1) != 0 {
            return Err(GateError::BadHandle);
        }
        let first = rel >> self.shift;
        if !Self::bit(&self.starts, first) {
            return Err(GateError::BadHandle);
        }
        let mut end = first + 1;
        while end < self.blocks && Self::bit(&self.used, end) && !Self::bit(&self.starts, end) {
            end += 1;
        }
        let n = end - first;
        if buf.len().div_ceil(self.block_size()) != n {
            return Err(GateError::BadHandle);
        }
        self.mark(first, n, false);
        self.starts[(first / 64) as usize] &= !(1 << (first % 64));
        self.free += n;
        self.hint = self.hint.min(first);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn block_sizes() {
        let l = Layout::new(1 << 20, 2).unwrap();
        let a = Arena::new(&l, 1, 0).unwrap();
        assert_eq!(a.block_size(), 64);
        assert_eq!(a.available(), l.arena_size());
        let l = Layout::new(1 << 30, 2).unwrap();
        let a = Arena::new(&l, 0, 0).unwrap();
        assert!(a.block_size() >= 8192);
        assert!(a.blocks <= MAX_BLOCKS);
        assert!(Arena::new(&l, 2, 0).is_err());
        assert!(Arena::new(&l, 0, 2).is_err());
    }

    #[test]
    fn alloc_free_model() {
        let l = Layout::new(1 << 20, 2).unwrap();
        let heap = l.channel_heap(0, 1);
        let mut a = Arena::new(&l, 1, 0).unwrap();
        let (arena_off, arena_size) = l.arena(1, 0).unwrap();
        let (peer_off, _) = l.arena(0, 1).unwrap();
        let mut live: Vec<SharedBuf> = Vec::new();
        let mut seed = 7u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Miri runs this ~1000x slower: a tenth of the steps still frees and reuses.
        let steps = if cfg!(miri) { 2_000 } else { 20_000 };
        for _ in 0..steps {
            if rnd() % 3 != 0 || live.is_empty() {
                let len = (rnd() % 5000) as usize + 1;
                if let Some(b) = a.alloc(len) {
                    assert_eq!(b.len() as usize, len);
                    assert!(heap.contains(b.offset(), b.len()));
                    assert!(
                        b.offset() >= peer_off + arena_size,
                        "not in the peer's arena"
                    );
                    assert!(
                        b.offset() >= arena_off && b.offset() + b.len() <= arena_off + arena_size
                    );
                    assert_eq!(b.offset() % 64, 0);
                    for o in &live {
                        let disjoint = b.offset() + b.len() <= o.offset()
                            || o.offset() + o.len() <= b.offset();
                        assert!(disjoint, "{b:?} overlaps {o:?}");
                    }
                    live.push(b);
                }
            } else {
                let i = (rnd() % live.len() as u64) as usize;
                let b = live.swap_remove(i);
                // Forged variants are refused and change nothing.
                assert_eq!(
                    a.free(SharedBuf::from_parts(b.offset(), b.len() + 64)),
                    Err(GateError::BadHandle)
                );
                assert_eq!(
                    a.free(SharedBuf::from_parts(b.offset() + 1, b.len() - 1)),
                    Err(GateError::BadHandle)
                );
                if b.len() > 64 {
                    let tail = SharedBuf::from_parts(b.offset() + 64, b.len() - 64);
                    assert_eq!(a.free(tail), Err(GateError::BadHandle));
                }
                a.free(b).unwrap();
                assert_eq!(a.free(b), Err(GateError::BadHandle));
            }
        }
        for b in live.drain(..) {
            a.free(b).unwrap();
        }
        assert_eq!(a.available(), arena_size as u64);
        // The whole arena in one piece, then nothing more.
        let all = a.alloc(arena_size as usize).unwrap();
        assert_eq!(all.offset(), arena_off);
        assert_eq!(a.alloc(1), None);
        a.free(all).unwrap();
        assert_eq!(a.alloc(0), None);
        assert_eq!(a.alloc(arena_size as usize + 1), None);
        assert_eq!(
            a.free(SharedBuf::from_parts(0, 64)),
            Err(GateError::BadHandle)
        );
    }
}
