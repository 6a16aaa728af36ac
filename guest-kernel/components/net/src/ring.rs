//! The byte ring through which a connection's received bytes cross from the `net`
//! compartment to the app's: single producer (net), single consumer (the app), in a
//! buffer of the shared heap of their channel. A `recv` on the app side is a local
//! copy out of the ring, not a gate round trip; gates are only for control and for
//! waiting (see the crate docs for who sleeps and who wakes whom).
//!
//! Layout (offsets in the buffer; each index word is written by one side only, every
//! word only with 8-byte atomics):
//!
//! ```text
//!   0  head     bytes ever written (producer)
//!   8  closed   0 open, 1 end of stream, 2 reset (producer)
//!  16  wake_at  0, or the tail at which the consumer should wake the producer
//!               (it stopped on a full ring) (producer)
//!  64  tail     bytes ever read (consumer)
//! 128  data     capacity bytes (a power of two)
//! ```
//!
//! Neither side trusts the other's words: each keeps its own index privately and only
//! reads the peer's, and an index that would put more than `capacity` bytes in the
//! ring (or fewer than none) is [`RingError::Corrupt`]: the reader refuses to read and
//! the writer to write, so a hostile peer can garble its own stream, never make the
//! other side read or write outside the buffer.

use rpc_shm::SharedBytes;

const HEAD: usize = 0;
const CLOSED: usize = 8;
const WAKE_AT: usize = 16;
const TAIL: usize = 64;
/// Where the data starts.
pub const DATA: usize = 128;

/// `closed` values.
pub const OPEN: u64 = 0;
pub const EOF: u64 = 1;
pub const RESET: u64 = 2;

/// What went wrong with a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The buffer is too small, or its data part is not a power of two.
    BadSize,
    /// The peer's index says more than a ring's worth of bytes are in flight.
    Corrupt,
}

/// The buffer size for a ring of `capacity` data bytes.
pub const fn buffer_len(capacity: usize) -> usize {
    DATA + capacity
}

fn capacity_of(bytes: &SharedBytes<'_>) -> Result<u64, RingError> {
    let cap = bytes.len().checked_sub(DATA).ok_or(RingError::BadSize)?;
    if cap == 0 || !cap.is_power_of_two() {
        return Err(RingError::BadSize);
    }
    Ok(cap as u64)
}

/// Copies between the ring's data area, starting at stream position `pos`, and
/// `buf`, in at most two pieces (the wrap).
fn copy(cap: u64, pos: u64, len: usize, mut piece: impl FnMut(usize, usize, usize)) {
    let at = (pos % cap) as usize;
    let first = len.min(cap as usize - at);
    piece(DATA + at, 0, first);
    if first < len {
        piece(DATA, first, len - first);
    }
}

/// The producer's side (net).
pub struct Writer<'r> {
    bytes: SharedBytes<'r>,
    cap: u64,
    head: u64,
    /// The last valid tail seen: the consumer's tail may only move forward from it,
    /// and not past the head.
    tail_seen: core::cell::Cell<u64>,
}

impl<'r> Writer<'r> {
    /// Initialises a fresh ring in `bytes` (all indices 0, open) and returns its writer.
    pub fn create(bytes: SharedBytes<'r>) -> Result<Self, RingError> {
        let cap = capacity_of(&bytes)?;
        for at in [HEAD, CLOSED, WAKE_AT, TAIL] {
            bytes.store_u64(at, 0);
        }
        Ok(Writer {
            bytes,
            cap,
            head: 0,
            tail_seen: core::cell::Cell::new(0),
        })
    }

    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Bytes written so far.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The consumer's tail, checked: between the last one seen and the head (so
    /// never more than a capacity behind it).
    fn tail(&self) -> Result<u64, RingError> {
        let tail = self.bytes.load_u64(TAIL).ok_or(RingError::Corrupt)?;
        let seen = self.tail_seen.get();
        if tail.wrapping_sub(seen) > self.head.wrapping_sub(seen) {
            return Err(RingError::Corrupt);
        }
        self.tail_seen.set(tail);
        Ok(tail)
    }

    /// Free bytes.
    pub fn free(&self) -> Result<usize, RingError> {
        Ok((self.cap - self.head.wrapping_sub(self.tail()?)) as usize)
    }

    /// Is the ring empty (everything written has been read)?
    pub fn drained(&self) -> Result<bool, RingError> {
        Ok(self.tail()? == self.head)
    }

    /// Copies as much of `src` as fits, publishes it, and returns how much.
    pub fn write(&mut self, src: &[u8]) -> Result<usize, RingError> {
        let n = src.len().min(self.free()?);
        if n == 0 {
            return Ok(0);
        }
        let bytes = self.bytes;
        copy(self.cap, self.head, n, |at, from, len| {
            // Cannot fail: the pieces lie inside the data area.
            let _ = bytes.copy_in(at, &src[from..from + len]);
        });
        self.head = self.head.wrapping_add(n as u64);
        self.bytes.store_u64(HEAD, self.head);
        Ok(n)
    }

    /// Ends the stream ([`EOF`] or [`RESET`]), after the bytes already written.
    pub fn close(&self, how: u64) {
        self.bytes.store_u64(CLOSED, how);
    }

    /// Asks the consumer to wake the producer once it has read up to stream position
    /// `tail` (0: never).
    pub fn wake_at(&self, tail: u64) {
        self.bytes.store_u64(WAKE_AT, tail);
    }
}

/// The consumer's side (the app).
pub struct Reader<'r> {
    bytes: SharedBytes<'r>,
    cap: u64,
    tail: u64,
    /// The last head read (checked), so small reads do not touch the producer's line.
    head: u64,
    /// The tail last stored for the producer: publishing is batched (every eighth of
    /// the ring, and whenever the reader runs dry) to keep small reads local.
    published: u64,
    /// A tail was published since [`Reader::take_published`] last looked.
    fresh: bool,
}

impl<'r> Reader<'r> {
    /// The reader of a ring the producer created in `bytes` (nothing read yet).
    pub fn open(bytes: SharedBytes<'r>) -> Result<Self, RingError> {
        let cap = capacity_of(&bytes)?;
        Ok(Reader {
            bytes,
            cap,
            tail: 0,
            head: 0,
            published: 0,
            fresh: false,
        })
    }

    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Bytes waiting, checked against the capacity. Reads the producer's head only
    /// when the bytes known to be there are used up.
    pub fn available(&mut self) -> Result<usize, RingError> {
        if self.head != self.tail {
            return Ok(self.head.wrapping_sub(self.tail) as usize);
        }
        let head = self.bytes.load_u64(HEAD).ok_or(RingError::Corrupt)?;
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

    /// Stores the tail for the producer.
    pub fn publish(&mut self) {
        if self.published != self.tail {
            self.published = self.tail;
            self.fresh = true;
            self.bytes.store_u64(TAIL, self.tail);
        }
    }

    /// Advances the tail by `n` consumed bytes, publishing it every eighth of the ring.
    fn consumed(&mut self, n: usize) {
        self.tail = self.tail.wrapping_add(n as u64);
        if self.tail.wrapping_sub(self.published) >= self.cap / 8 {
            self.publish();
        }
    }

    /// Is anything to read, or the stream over? (Only reads shared words: usable as
    /// a wait condition.)
    pub fn readable(&self) -> bool {
        self.head != self.tail
            || self.bytes.load_u64(HEAD) != Some(self.tail)
            || self.closed() != OPEN
    }

    /// How the producer ended the stream ([`OPEN`] while it has not). Read it after
    /// [`Reader::available`] returned 0 to tell "not yet" from "never".
    pub fn closed(&self) -> u64 {
        self.bytes.load_u64(CLOSED).unwrap_or(RESET)
    }

    /// Copies up to `dst.len()` waiting bytes into `dst` and returns how many (0 if
    /// none are waiting).
    pub fn read(&mut self, dst: &mut [u8]) -> Result<usize, RingError> {
        let n = dst.len().min(self.available()?);
        if n == 0 {
            return Ok(0);
        }
        let bytes = self.bytes;
        copy(self.cap, self.tail, n, |at, to, len| {
            // Cannot fail: the pieces lie inside the data area.
            let _ = bytes.copy_out(at, &mut dst[to..to + len]);
        });
        self.consumed(n);
        Ok(n)
    }

    /// Skips up to `n` waiting bytes without copying them; returns how many.
    pub fn skip(&mut self, n: usize) -> Result<usize, RingError> {
        let n = n.min(self.available()?);
        self.consumed(n);
        Ok(n)
    }

    /// Was a tail published since the last call? (Only then can a waiting producer
    /// have something new to hear.)
    pub fn take_published(&mut self) -> bool {
        core::mem::take(&mut self.fresh)
    }

    /// Has the producer asked to be woken at a tail we have published? (For a
    /// guaranteed answer call it after [`Reader::publish`] and a SeqCst fence, so that
    /// a producer that set `wake_at` before re-checking the tail is seen.)
    pub fn producer_waits(&self) -> bool {
        match self.bytes.load_u64(WAKE_AT) {
            Some(0) | None => false,
            Some(at) => self.published.wrapping_sub(at) < (1 << 63),
        }
    }
}
