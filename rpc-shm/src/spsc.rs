//! A single-producer single-consumer ring in a buffer of the shared heap: the bulk
//! data path of docs/design.md, gates, where one gate round trip per small operation would
//! dominate. Two kinds of entries, one ring: bytes ([`Producer::write`],
//! [`Consumer::read`]: net's socket byte streams) and 64-bit words ([`Producer::push`],
//! [`Consumer::pop`]: netdev's relay of buffer ids).
//!
//! # Layout
//!
//! A ring sits at byte `at` (a multiple of 8) of a [`SharedBytes`] buffer; offsets are
//! from `at`, and each index line is written by one side only:
//!
//! ```text
//!   0  HEAD      entries ever pushed (producer)
//!   8  words 0..USER_WORDS of the producer's line, for the ring's user (producer)
//!  64  TAIL      entries ever popped (consumer)
//!  72  words 0..USER_WORDS of the consumer's line, for the ring's user (consumer)
//! 128  DATA      capacity entries of T::SIZE bytes (capacity a power of two)
//! ```
//!
//! Head and tail are free-running u64 counters (they never wrap in practice); entry
//! `i` lives at `DATA + (i % capacity) * T::SIZE`. The user words carry what a ring's
//! user needs beside the indices in the same cache line (net's byte ring: how the
//! stream ended, and at which tail to wake the producer).
//!
//! # Ordering
//!
//! The producer copies entries into the data area, then stores HEAD with release; the
//! consumer loads HEAD with acquire, then copies entries out, then stores TAIL with
//! release; the producer loads TAIL with acquire before it reuses the space. Every
//! access is an atomic of [`SharedBytes`] (bulk copies are `rep movsb` outside Miri,
//! which is opaque to the compiler and yields old or new bytes under a race).
//!
//! # Trust
//!
//! Neither side trusts the other's words. Each keeps its own index privately and only
//! reads the peer's: the consumer refuses a head that would put more than `capacity`
//! entries in the ring (or fewer than none), the producer a tail that moves backwards
//! or passes the head; both are [`RingError::Corrupt`], and nothing is read or written
//! then. Every access is bounds-checked against the buffer besides. So a hostile peer
//! can garble its own stream (entries are validated by their users: a buffer id must
//! be one that was lent), never make the other side read or write outside the ring.
//!
//! # Batching
//!
//! The consumer caches the last head it checked and loads the producer's line again
//! only when the entries it knows of are used up, and it publishes its tail every
//! [`Consumer::set_publish_every`] entries (every entry by default) and whenever it
//! runs dry: small reads of a byte stream then stay local.
//!
//! # Why the call rings are not built on it
//!
//! The gate rings of [`crate::Endpoint`] ([`crate::slot`]) are not queues: a call's
//! request and its reply use the same slot, in place, nested calls finish last-in
//! first-out, and there is no shared index at all (each side keeps its sequence number
//! privately; the slot's control word says whose turn it is). That is what lets a call
//! move one cache line each way. A head/tail ring would add two index lines to every
//! call, so they stay separate.

use core::cell::Cell;
use core::marker::PhantomData;

use crate::layout::LINE;
use crate::region::SharedBytes;

/// Offset of the head (entries ever pushed), in the producer's line.
pub const HEAD: usize = 0;
/// Offset of the tail (entries ever popped), in the consumer's line.
pub const TAIL: usize = LINE as usize;
/// Offset of the data area.
pub const DATA: usize = 2 * LINE as usize;
/// Words free for the ring's user in each index line (after its index).
pub const USER_WORDS: usize = LINE as usize / 8 - 1;

/// What a ring carries: bytes or 64-bit words. Sealed: the ring's copies are written
/// for exactly these two.
pub trait Entry: sealed::Sealed + Copy {
    /// Bytes of one entry.
    const SIZE: usize;
}

impl Entry for u8 {
    const SIZE: usize = 1;
}

impl Entry for u64 {
    const SIZE: usize = 8;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u64 {}
}

/// Bytes of a ring of `capacity` entries of `T`, index lines included.
pub const fn ring_len<T: Entry>(capacity: usize) -> usize {
    DATA + capacity * T::SIZE
}

/// What went wrong with a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The capacity is not a power of two, the ring does not fit the buffer, or `at`
    /// is not a multiple of 8.
    BadSize,
    /// The peer's index is impossible (see the module docs).
    Corrupt,
}

/// Checks that a ring of `capacity` entries of `T` fits at `at` of `bytes`; returns
/// the capacity.
fn check<T: Entry>(bytes: &SharedBytes<'_>, at: usize, capacity: usize) -> Result<u64, RingError> {
    let end = capacity
        .checked_mul(T::SIZE)
        .and_then(|data| data.checked_add(DATA))
        .and_then(|len| len.checked_add(at))
        .ok_or(RingError::BadSize)?;
    if capacity == 0 || !capacity.is_power_of_two() || end > bytes.len() || at % 8 != 0 {
        return Err(RingError::BadSize);
    }
    Ok(capacity as u64)
}

/// Copies `len` entries starting at stream position `pos` between the data area of a
/// ring (at `at`, `cap` entries of `size` bytes) and a private buffer, in at most two
/// pieces (the wrap): `piece(offset in the shared bytes, offset in the private
/// buffer, bytes)`.
#[inline(always)]
fn pieces(
    at: usize,
    cap: u64,
    size: usize,
    pos: u64,
    len: usize,
    mut piece: impl FnMut(usize, usize, usize),
) {
    let start = (pos % cap) as usize;
    let first = len.min(cap as usize - start);
    piece(at + DATA + start * size, 0, first * size);
    if first < len {
        piece(at + DATA, first * size, (len - first) * size);
    }
}

/// The producing side of a ring.
pub struct Producer<'r, T: Entry> {
    bytes: SharedBytes<'r>,
    at: usize,
    cap: u64,
    /// Entries pushed (ours: the shared copy is only written).
    head: u64,
    /// The last valid tail seen: the consumer's tail may only move forward from it,
    /// and not past the head.
    tail_seen: Cell<u64>,
    _entry: PhantomData<T>,
}

impl<'r, T: Entry> Producer<'r, T> {
    /// The producer of a ring of `capacity` entries at `at` in `bytes`, which holds a
    /// fresh ring: zeroed memory, or one [`Producer::create`] initialised.
    pub fn new(bytes: SharedBytes<'r>, at: usize, capacity: usize) -> Result<Self, RingError> {
        let cap = check::<T>(&bytes, at, capacity)?;
        Ok(Producer {
            bytes,
            at,
            cap,
            head: 0,
            tail_seen: Cell::new(0),
            _entry: PhantomData,
        })
    }

    /// Initialises a fresh ring at `at` in `bytes` (both index lines zeroed: indices
    /// and user words) and returns its producer.
    pub fn create(bytes: SharedBytes<'r>, at: usize, capacity: usize) -> Result<Self, RingError> {
        let producer = Self::new(bytes, at, capacity)?;
        for word in (0..DATA).step_by(8) {
            bytes.store_u64(at + word, 0);
        }
        Ok(producer)
    }

    /// Entries the ring holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Entries pushed so far.
    #[inline]
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The consumer's tail, checked: between the last one seen and the head (so never
    /// more than a capacity behind it).
    #[inline]
    fn tail(&self) -> Result<u64, RingError> {
        let tail = self
            .bytes
            .load_u64(self.at + TAIL)
            .ok_or(RingError::Corrupt)?;
        let seen = self.tail_seen.get();
        if tail.wrapping_sub(seen) > self.head.wrapping_sub(seen) {
            return Err(RingError::Corrupt);
        }
        self.tail_seen.set(tail);
        Ok(tail)
    }

    /// Entries pushed and not yet popped.
    #[inline]
    pub fn len(&self) -> Result<usize, RingError> {
        Ok(self.head.wrapping_sub(self.tail()?) as usize)
    }

    /// Is the ring empty (everything pushed was popped)?
    #[inline]
    pub fn is_empty(&self) -> Result<bool, RingError> {
        Ok(self.tail()? == self.head)
    }

    /// Free entries.
    #[inline]
    pub fn free(&self) -> Result<usize, RingError> {
        Ok(self.capacity() - self.len()?)
    }

    /// Publishes `n` more entries, already in the data area.
    #[inline]
    fn commit(&mut self, n: usize) {
        self.head = self.head.wrapping_add(n as u64);
        self.bytes.store_u64(self.at + HEAD, self.head);
    }

    /// Stores user word `i` of the producer's line (release).
    ///
    /// # Panics
    ///
    /// If `i >= USER_WORDS` (a bug in the ring's user, never peer input).
    #[inline]
    pub fn store_word(&self, i: usize, value: u64) {
        assert!(i < USER_WORDS, "user word {i} of {USER_WORDS}");
        self.bytes.store_u64(self.at + HEAD + 8 + 8 * i, value);
    }

    /// User word `i` of the consumer's line (acquire); `None` if out of the buffer.
    ///
    /// # Panics
    ///
    /// If `i >= USER_WORDS`.
    #[inline]
    pub fn peer_word(&self, i: usize) -> Option<u64> {
        assert!(i < USER_WORDS, "user word {i} of {USER_WORDS}");
        self.bytes.load_u64(self.at + TAIL + 8 + 8 * i)
    }
}

impl Producer<'_, u8> {
    /// Copies as much of `src` as fits, publishes it, and returns how much.
    #[inline]
    pub fn write(&mut self, src: &[u8]) -> Result<usize, RingError> {
        let n = src.len().min(self.free()?);
        if n == 0 {
            return Ok(0);
        }
        let bytes = self.bytes;
        pieces(self.at, self.cap, 1, self.head, n, |to, from, len| {
            // Cannot fail: the pieces lie inside the data area (checked at creation).
            let _ = bytes.copy_in(to, &src[from..from + len]);
        });
        self.commit(n);
        Ok(n)
    }
}

impl Producer<'_, u64> {
    /// Pushes `value`; `Ok(false)` if the ring is full.
    #[inline]
    pub fn push(&mut self, value: u64) -> Result<bool, RingError> {
        if self.len()? as u64 >= self.cap {
            return Ok(false);
        }
        let slot = self.at + DATA + (self.head % self.cap) as usize * 8;
        self.bytes.store_u64(slot, value);
        self.commit(1);
        Ok(true)
    }
}

/// The consuming side of a ring.
pub struct Consumer<'r, T: Entry> {
    bytes: SharedBytes<'r>,
    at: usize,
    cap: u64,
    /// Entries popped (ours: the shared copy is only written).
    tail: u64,
    /// The last head read (checked), so small reads do not touch the producer's line.
    head: u64,
    /// The tail last stored for the producer.
    published: u64,
    /// Publish the tail once it is this far ahead of the published one.
    every: u64,
    /// A tail was published since [`Consumer::take_published`] last looked.
    fresh: bool,
    _entry: PhantomData<T>,
}

impl<'r, T: Entry> Consumer<'r, T> {
    /// The consumer of a ring of `capacity` entries at `at` in `bytes`, fresh (nothing
    /// popped yet); publishes its tail after every entry until
    /// [`Consumer::set_publish_every`] says otherwise.
    pub fn new(bytes: SharedBytes<'r>, at: usize, capacity: usize) -> Result<Self, RingError> {
        let cap = check::<T>(&bytes, at, capacity)?;
        Ok(Consumer {
            bytes,
            at,
            cap,
            tail: 0,
            head: 0,
            published: 0,
            every: 1,
            fresh: false,
            _entry: PhantomData,
        })
    }

    /// Publishes the tail only every `entries` entries (at least 1), and whenever the
    /// ring runs dry ([`Consumer::available`] finds nothing).
    pub fn set_publish_every(&mut self, entries: usize) {
        self.every = (entries as u64).max(1);
    }

    /// Entries the ring holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Entries waiting, checked against the capacity. Reads the producer's head only
    /// when the entries known to be there are used up; publishes the tail when there
    /// are none.
    #[inline]
    pub fn available(&mut self) -> Result<usize, RingError> {
        if self.head != self.tail {
            return Ok(self.head.wrapping_sub(self.tail) as usize);
        }
        let head = self
            .bytes
            .load_u64(self.at + HEAD)
            .ok_or(RingError::Corrupt)?;
        let n = head.wrapping_sub(self.tail);
        if n > self.cap {
            return Err(RingError::Corrupt);
        }
        self.head = head;
        if n == 0 {
            self.publish();
        }
        Ok(n as usize)
    }

    /// Is anything waiting? Only reads shared words and changes nothing, so it serves
    /// as a wait condition. A garbled head counts as something (the next read reports
    /// it).
    #[inline]
    pub fn pending(&self) -> bool {
        self.head != self.tail || self.bytes.load_u64(self.at + HEAD) != Some(self.tail)
    }

    /// Stores the tail for the producer (if it moved since the last time).
    #[inline]
    pub fn publish(&mut self) {
        if self.published != self.tail {
            self.published = self.tail;
            self.fresh = true;
            self.bytes.store_u64(self.at + TAIL, self.tail);
        }
    }

    /// The tail last published.
    #[inline]
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Was a tail published since the last call? (Only then can a producer waiting for
    /// room have something new to hear.)
    #[inline]
    pub fn take_published(&mut self) -> bool {
        core::mem::take(&mut self.fresh)
    }

    /// Advances the tail by `n` consumed entries, publishing it as batching says.
    #[inline]
    fn consumed(&mut self, n: usize) {
        self.tail = self.tail.wrapping_add(n as u64);
        if self.tail.wrapping_sub(self.published) >= self.every {
            self.publish();
        }
    }

    /// Skips up to `n` waiting entries without copying them; returns how many.
    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<usize, RingError> {
        let n = n.min(self.available()?);
        self.consumed(n);
        Ok(n)
    }

    /// Stores user word `i` of the consumer's line (release).
    ///
    /// # Panics
    ///
    /// If `i >= USER_WORDS` (a bug in the ring's user, never peer input).
    #[inline]
    pub fn store_word(&self, i: usize, value: u64) {
        assert!(i < USER_WORDS, "user word {i} of {USER_WORDS}");
        self.bytes.store_u64(self.at + TAIL + 8 + 8 * i, value);
    }

    /// User word `i` of the producer's line (acquire); `None` if out of the buffer.
    ///
    /// # Panics
    ///
    /// If `i >= USER_WORDS`.
    #[inline]
    pub fn peer_word(&self, i: usize) -> Option<u64> {
        assert!(i < USER_WORDS, "user word {i} of {USER_WORDS}");
        self.bytes.load_u64(self.at + HEAD + 8 + 8 * i)
    }
}

impl Consumer<'_, u8> {
    /// Copies up to `dst.len()` waiting bytes into `dst` and returns how many (0 if
    /// none are waiting).
    #[inline]
    pub fn read(&mut self, dst: &mut [u8]) -> Result<usize, RingError> {
        let n = dst.len().min(self.available()?);
        if n == 0 {
            return Ok(0);
        }
        let bytes = self.bytes;
        pieces(self.at, self.cap, 1, self.tail, n, |from, to, len| {
            // Cannot fail: the pieces lie inside the data area (checked at creation).
            let _ = bytes.copy_out(from, &mut dst[to..to + len]);
        });
        self.consumed(n);
        Ok(n)
    }
}

impl Consumer<'_, u64> {
    /// The next entry, if any.
    #[inline]
    pub fn pop(&mut self) -> Result<Option<u64>, RingError> {
        if self.available()? == 0 {
            return Ok(None);
        }
        let slot = self.at + DATA + (self.tail % self.cap) as usize * 8;
        let value = self.bytes.load_u64(slot).ok_or(RingError::Corrupt)?;
        self.consumed(1);
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::SharedBuf;
    use crate::region::Region;
    use std::vec;
    use std::vec::Vec;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    /// A one-compartment region in memory; rings live at the start of its heap.
    struct Shm {
        _pages: Vec<Page>,
        region: Region,
    }

    impl Shm {
        fn new() -> Shm {
            let mut pages: Vec<Page> = (0..16).map(|_| Page([0; 4096])).collect();
            let size = pages.len() * 4096;
            // SAFETY: `pages` lives as long as the region (same struct, dropped after
            // every borrow of it) and is only accessed through it.
            let region = unsafe { Region::init(pages.as_mut_ptr() as *mut u8, size, 1) }.unwrap();
            Shm {
                _pages: pages,
                region,
            }
        }

        /// `len` bytes at the start of the channel heap.
        fn buf(&self, len: usize) -> SharedBytes<'_> {
            let heap = self.region.layout().channel_heap(0, 0);
            self.region
                .bytes(SharedBuf::from_parts(heap.offset(), len as u32))
                .unwrap()
        }
    }

    #[test]
    fn layout_constants() {
        assert_eq!((HEAD, TAIL, DATA, USER_WORDS), (0, 64, 128, 7));
        assert_eq!(ring_len::<u8>(64), 192);
        assert_eq!(ring_len::<u64>(8), 192);
    }

    #[test]
    fn bytes_arrive_in_order_across_the_wrap() {
        let shm = Shm::new();
        let b = shm.buf(ring_len::<u8>(64));
        let mut w = Producer::<u8>::create(b, 0, 64).unwrap();
        let mut r = Consumer::<u8>::new(b, 0, 64).unwrap();
        r.set_publish_every(8);
        let (mut sent, mut got, mut next) = (Vec::new(), Vec::new(), 0u8);
        for round in 0..100 {
            let chunk: Vec<u8> = (0..(round * 7) % 50 + 1)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            let put = w.write(&chunk).unwrap();
            sent.extend_from_slice(&chunk[..put]);
            let mut buf = vec![0u8; (round * 5) % 40 + 1];
            loop {
                let k = r.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
        }
        assert_eq!(got, sent);
        assert!(sent.len() > 500, "the ring wrapped many times");
        assert!(w.is_empty().unwrap());
    }

    #[test]
    fn words_cross_in_order_and_a_full_ring_refuses() {
        let shm = Shm::new();
        let b = shm.buf(ring_len::<u64>(8) + 64);
        // At an offset inside the buffer, as netdev's control block holds four rings.
        let mut p = Producer::<u64>::new(b, 64, 8).unwrap();
        let mut c = Consumer::<u64>::new(b, 64, 8).unwrap();
        let (mut next, mut expect) = (0u64, 0u64);
        for round in 0..100 {
            for _ in 0..(round % 11) {
                if p.push(next * 3 + 1).unwrap() {
                    next += 1;
                }
            }
            assert!(p.len().unwrap() <= 8);
            for _ in 0..(round % 7) {
                match c.pop().unwrap() {
                    Some(v) => {
                        assert_eq!(v, expect * 3 + 1);
                        expect += 1;
                    }
                    None => break,
                }
            }
        }
        while let Some(v) = c.pop().unwrap() {
            assert_eq!(v, expect * 3 + 1);
            expect += 1;
        }
        assert_eq!(expect, next);
        assert!(next > 100);
        for i in 0..8 {
            assert!(p.push(i).unwrap());
        }
        assert!(!p.push(99).unwrap(), "full");
        assert_eq!(p.free(), Ok(0));
        assert!(c.pending());
        assert_eq!(c.available(), Ok(8));
        // The first 64 bytes (before the ring) are untouched.
        assert!((0..64).step_by(8).all(|at| b.load_u64(at) == Some(0)));
    }

    #[test]
    fn the_tail_is_published_in_batches_and_when_dry() {
        let shm = Shm::new();
        let b = shm.buf(ring_len::<u8>(64));
        let mut w = Producer::<u8>::create(b, 0, 64).unwrap();
        let mut r = Consumer::<u8>::new(b, 0, 64).unwrap();
        r.set_publish_every(16);
        assert_eq!(w.write(&[1; 64]).unwrap(), 64);
        let mut buf = [0u8; 10];
        assert_eq!(r.read(&mut buf).unwrap(), 10);
        assert_eq!(w.free(), Ok(0), "10 < 16: not published");
        assert!(!r.take_published());
        assert_eq!(r.read(&mut buf).unwrap(), 10);
        assert_eq!(w.free(), Ok(20));
        assert!(r.take_published());
        assert!(!r.take_published());
        assert_eq!(r.skip(100), Ok(44));
        assert_eq!(r.available(), Ok(0), "dry: publishes");
        assert_eq!(w.free(), Ok(64));
        assert_eq!(r.published(), 64);
    }

    #[test]
    fn user_words_sit_beside_each_index() {
        let shm = Shm::new();
        let b = shm.buf(ring_len::<u8>(64));
        b.fill(0xEE);
        let w = Producer::<u8>::create(b, 0, 64).unwrap();
        let r = Consumer::<u8>::new(b, 0, 64).unwrap();
        assert_eq!(r.peer_word(0), Some(0), "create zeroes the user words");
        w.store_word(0, 1);
        w.store_word(USER_WORDS - 1, 7);
        r.store_word(2, 9);
        assert_eq!((r.peer_word(0), r.peer_word(6)), (Some(1), Some(7)));
        assert_eq!(w.peer_word(2), Some(9));
        assert_eq!(
            (b.load_u64(8), b.load_u64(56), b.load_u64(88)),
            (Some(1), Some(7), Some(9))
        );
        // The data area was left alone.
        assert_eq!(b.get(DATA), Some(0xEE));
    }

    #[test]
    #[should_panic(expected = "user word 7 of 7")]
    fn a_user_word_past_the_line_is_a_bug() {
        let shm = Shm::new();
        let b = shm.buf(ring_len::<u8>(64));
        Producer::<u8>::create(b, 0, 64)
            .unwrap()
            .store_word(USER_WORDS, 0);
    }

    #[test]
    fn bad_layouts_are_refused() {
        let shm = Shm::new();
        let b = shm.buf(ring_len::<u64>(8));
        assert_eq!(
            Producer::<u64>::new(b, 0, 6).err(),
            Some(RingError::BadSize),
            "not a power of two"
        );
        assert_eq!(
            Producer::<u64>::new(b, 0, 0).err(),
            Some(RingError::BadSize),
            "empty"
        );
        assert_eq!(
            Producer::<u64>::new(b, 0, 16).err(),
            Some(RingError::BadSize),
            "too small"
        );
        assert_eq!(
            Consumer::<u64>::new(b, 4, 8).err(),
            Some(RingError::BadSize),
            "misaligned"
        );
        assert_eq!(
            Consumer::<u64>::new(b, 8, 8).err(),
            Some(RingError::BadSize),
            "past the end"
        );
        assert_eq!(
            Consumer::<u64>::new(b, usize::MAX - 7, 8).err(),
            Some(RingError::BadSize),
            "overflow"
        );
        assert_eq!(
            Consumer::<u64>::new(b, 0, usize::MAX / 4 + 1).err(),
            Some(RingError::BadSize),
            "overflow of the size"
        );
        assert_eq!(Consumer::<u8>::new(b, 0, 64).map(|c| c.capacity()), Ok(64));
    }

    /// A hostile producer sets head anywhere: the consumer refuses anything that would
    /// put more than the capacity (or fewer than nothing) in the ring, and never reads
    /// outside it (guard bytes after the ring would come back as 0xEE).
    #[test]
    fn the_consumer_refuses_garbage_heads() {
        let shm = Shm::new();
        let len = ring_len::<u8>(64);
        shm.buf(len + 64).fill(0xEE);
        let b = shm.buf(len);
        let mut w = Producer::<u8>::create(b, 0, 64).unwrap();
        let mut r = Consumer::<u8>::new(b, 0, 64).unwrap();
        w.write(&[1; 8]).unwrap();
        let mut buf = [0u8; 200];
        assert_eq!(r.read(&mut buf[..4]).unwrap(), 4);
        for garbage in [65u64 + 4, u64::MAX, 1 << 63, 3, 1000, u64::MAX - 63] {
            b.store_u64(HEAD, garbage);
            let mut fresh = Consumer::<u8>::new(b, 0, 64).unwrap();
            match fresh.read(&mut buf) {
                Err(RingError::Corrupt) => {}
                Ok(n) => {
                    assert!(n <= 64, "garbage head {garbage} let {n} bytes through");
                    assert!(buf[..n].iter().all(|&x| x != 0xEE), "read past the ring");
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        // A head behind the tail (4 read): the 4 bytes validated earlier still come,
        // then the bad head shows.
        b.store_u64(HEAD, 2);
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        assert_eq!(r.read(&mut buf), Err(RingError::Corrupt));
        assert_eq!(r.available(), Err(RingError::Corrupt));
        assert!(r.pending(), "a garbled head counts as something to look at");
    }

    /// A hostile consumer sets tail anywhere: the producer refuses to write rather than
    /// overwrite unread entries or write outside the ring.
    #[test]
    fn the_producer_refuses_garbage_tails() {
        let shm = Shm::new();
        let len = ring_len::<u8>(64);
        let after = shm.buf(len + 64);
        after.fill(0xEE);
        let b = shm.buf(len);
        let mut w = Producer::<u8>::create(b, 0, 64).unwrap();
        w.write(&[5; 40]).unwrap();
        for garbage in [41u64, u64::MAX, 1 << 40, u64::MAX - 20] {
            b.store_u64(TAIL, garbage);
            assert_eq!(w.free(), Err(RingError::Corrupt), "tail {garbage}");
            assert_eq!(w.write(&[9; 100]), Err(RingError::Corrupt));
        }
        // A tail that claims everything was read is fine: the space is reused in place;
        // one that then moves backwards is not.
        b.store_u64(TAIL, 40);
        assert_eq!(w.free(), Ok(64));
        b.store_u64(TAIL, 39);
        assert_eq!(w.free(), Err(RingError::Corrupt));
        b.store_u64(TAIL, 40);
        assert_eq!(w.write(&[9; 100]).unwrap(), 64);
        let mut guard = [0u8; 64];
        after.read(len, &mut guard).unwrap();
        assert!(guard.iter().all(|&x| x == 0xEE), "wrote past the ring");
    }

    #[test]
    fn hostile_word_indices_are_refused() {
        let shm = Shm::new();
        let b = shm.buf(ring_len::<u64>(8));
        let mut p = Producer::<u64>::new(b, 0, 8).unwrap();
        let mut c = Consumer::<u64>::new(b, 0, 8).unwrap();
        p.push(1).unwrap();
        // A producer claiming more than a ring's worth.
        b.store_u64(HEAD, 9);
        assert_eq!(c.pop(), Err(RingError::Corrupt));
        b.store_u64(HEAD, u64::MAX);
        assert_eq!(c.available(), Err(RingError::Corrupt));
        b.store_u64(HEAD, 1);
        assert_eq!(c.pop(), Ok(Some(1)));
        // A consumer whose tail runs ahead of the head, or back.
        b.store_u64(TAIL, 5);
        assert_eq!(p.push(2), Err(RingError::Corrupt));
        b.store_u64(TAIL, 1);
        assert_eq!(p.push(2), Ok(true));
        b.store_u64(TAIL, 0);
        assert_eq!(p.len(), Err(RingError::Corrupt));
    }

    /// Producer and consumer on two threads (Miri runs this with weak-memory
    /// emulation: every byte must arrive as written, in order, through acquire/release
    /// on the indices alone).
    #[test]
    fn a_byte_stream_crosses_between_threads() {
        let shm = Shm::new();
        let b = shm.buf(ring_len::<u8>(64));
        let total: usize = if cfg!(miri) { 600 } else { 200_000 };
        let mut w = Producer::<u8>::create(b, 0, 64).unwrap();
        let mut r = Consumer::<u8>::new(b, 0, 64).unwrap();
        r.set_publish_every(8);
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut sent = 0usize;
                while sent < total {
                    let chunk: Vec<u8> = (sent..total.min(sent + 23))
                        .map(|i| (i % 251) as u8)
                        .collect();
                    let n = w.write(&chunk).unwrap();
                    sent += n;
                    if n == 0 {
                        std::thread::yield_now();
                    }
                }
            });
            let mut got = 0usize;
            let mut buf = [0u8; 17];
            while got < total {
                let n = r.read(&mut buf).unwrap();
                for (k, &x) in buf[..n].iter().enumerate() {
                    assert_eq!(x, ((got + k) % 251) as u8, "byte {}", got + k);
                }
                got += n;
                if n == 0 {
                    std::thread::yield_now();
                }
            }
        });
    }

    #[test]
    fn words_cross_between_threads() {
        let shm = Shm::new();
        let b = shm.buf(ring_len::<u64>(4));
        let total: u64 = if cfg!(miri) { 200 } else { 100_000 };
        let mut p = Producer::<u64>::new(b, 0, 4).unwrap();
        let mut c = Consumer::<u64>::new(b, 0, 4).unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut next = 0;
                while next < total {
                    if p.push(next.wrapping_mul(0x9E37_79B9_7F4A_7C15)).unwrap() {
                        next += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            });
            let mut expect = 0;
            while expect < total {
                match c.pop().unwrap() {
                    Some(v) => {
                        assert_eq!(v, expect.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                        expect += 1;
                    }
                    None => std::thread::yield_now(),
                }
            }
        });
    }
}
