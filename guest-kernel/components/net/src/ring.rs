//! The byte ring through which a connection's received bytes cross from the `net`
//! compartment to the app's: single producer (net), single consumer (the app), in a
//! buffer of the shared heap of their channel. A `recv` on the app side is a local
//! copy out of the ring, not a gate round trip; gates are only for control and for
//! waiting (see the crate docs for who sleeps and who wakes whom).
//!
//! The ring is rpc-shm's [`spsc`] ring of bytes at the start of the buffer (its docs
//! have the ordering and why neither side trusts the other's index); this module adds
//! the stream's end and the producer's wake-up request, in user words of the
//! producer's line:
//!
//! ```text
//!   0  head     bytes ever written (producer)
//!   8  closed   0 open, 1 end of stream, 2 reset, 3 moved (producer; user word 0)
//!  16  wake_at  0, or the tail at which the consumer should wake the producer
//!               (it stopped on a full ring) (producer; user word 1)
//!  24  since    the producer's arrival stamp of the oldest unread bytes: a counter
//!               the stack bumps for every ring it writes into while empty, so the
//!               app can serve its ready connections in the order their bytes came
//!               (as a kernel's epoll ready list does) (producer; user word 2)
//!  32  room     free bytes in the connection's send buffer, as of the stack's last
//!               poll round, so a sender waits for room on a shared word instead of
//!               asking in gate calls (producer; user word 3)
//!  64  tail     bytes ever read (consumer)
//! 128  data     capacity bytes (a power of two)
//! ```
//!
//! The reader publishes its tail every eighth of the ring (and whenever it runs dry),
//! so small reads stay local.
//!
//! A ring can be replaced while the stream runs ([`MOVED`]): the stack sizes each
//! connection's ring by how many connections share the heap, so when one arrives or
//! leaves it gives the others rings of the new size. It writes no more into the old
//! ring and closes it with [`MOVED`]; the reader reads it to its end, then asks the
//! stack for the connection's ring again (`sock::ring`), which frees the old one. So
//! the bytes stay in order and neither side ever reads a ring the other has let go of.

use rpc_shm::SharedBytes;
use rpc_shm::spsc::{self, Consumer, Producer};

pub use rpc_shm::spsc::RingError;

/// The producer's user words.
const CLOSED: usize = 0;
const WAKE_AT: usize = 1;
const SINCE: usize = 2;
const ROOM: usize = 3;
/// Where the data starts.
pub const DATA: usize = spsc::DATA;

/// `closed` values.
pub const OPEN: u64 = 0;
pub const EOF: u64 = 1;
pub const RESET: u64 = 2;
/// The stream continues in another ring (see the module docs).
pub const MOVED: u64 = 3;

/// The buffer size for a ring of `capacity` data bytes.
pub const fn buffer_len(capacity: usize) -> usize {
    spsc::ring_len::<u8>(capacity)
}

/// The capacity of the ring filling `bytes`.
fn capacity_of(bytes: &SharedBytes<'_>) -> Result<usize, RingError> {
    bytes.len().checked_sub(DATA).ok_or(RingError::BadSize)
}

/// The producer's side (net).
pub struct Writer<'r> {
    ring: Producer<'r, u8>,
}

impl<'r> Writer<'r> {
    /// Initialises a fresh ring in `bytes` (all indices 0, open) and returns its writer.
    pub fn create(bytes: SharedBytes<'r>) -> Result<Self, RingError> {
        let ring = Producer::create(bytes, 0, capacity_of(&bytes)?)?;
        Ok(Writer { ring })
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Bytes written so far.
    #[inline]
    pub fn head(&self) -> u64 {
        self.ring.head()
    }

    /// Free bytes.
    #[inline]
    pub fn free(&self) -> Result<usize, RingError> {
        self.ring.free()
    }

    /// Is the ring empty (everything written has been read)?
    #[inline]
    pub fn drained(&self) -> Result<bool, RingError> {
        self.ring.is_empty()
    }

    /// Copies as much of `src` as fits, publishes it, and returns how much.
    #[inline]
    pub fn write(&mut self, src: &[u8]) -> Result<usize, RingError> {
        self.ring.write(src)
    }

    /// Ends the stream ([`EOF`] or [`RESET`]), after the bytes already written.
    pub fn close(&self, how: u64) {
        self.ring.store_word(CLOSED, how);
    }

    /// Stamps the bytes about to be written into an empty ring with `stamp` (see
    /// `since` in the module docs).
    pub fn set_since(&self, stamp: u64) {
        self.ring.store_word(SINCE, stamp);
    }

    /// Publishes the free bytes of the connection's send buffer (see `room`).
    pub fn set_send_room(&self, room: u64) {
        self.ring.store_word(ROOM, room);
    }

    /// Asks the consumer to wake the producer once it has read up to stream position
    /// `tail` (0: never).
    pub fn wake_at(&self, tail: u64) {
        self.ring.store_word(WAKE_AT, tail);
    }
}

/// The consumer's side (the app).
pub struct Reader<'r> {
    ring: Consumer<'r, u8>,
}

impl<'r> Reader<'r> {
    /// The reader of a ring the producer created in `bytes` (nothing read yet).
    pub fn open(bytes: SharedBytes<'r>) -> Result<Self, RingError> {
        let mut ring = Consumer::new(bytes, 0, capacity_of(&bytes)?)?;
        ring.set_publish_every(ring.capacity() / 8);
        Ok(Reader { ring })
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Bytes waiting, checked against the capacity. Reads the producer's head only
    /// when the bytes known to be there are used up.
    #[inline]
    pub fn available(&mut self) -> Result<usize, RingError> {
        self.ring.available()
    }

    /// Stores the tail for the producer.
    #[inline]
    pub fn publish(&mut self) {
        self.ring.publish()
    }

    /// Is anything to read, or the stream over? (Only reads shared words: usable as
    /// a wait condition.)
    #[inline]
    pub fn readable(&self) -> bool {
        self.ring.pending() || self.closed() != OPEN
    }

    /// How the producer ended the stream ([`OPEN`] while it has not). Read it after
    /// [`Reader::available`] returned 0 to tell "not yet" from "never".
    #[inline]
    pub fn closed(&self) -> u64 {
        self.ring.peer_word(CLOSED).unwrap_or(RESET)
    }

    /// The arrival stamp of the oldest unread bytes (only an ordering hint: a
    /// garbled word misorders the producer's own connections, nothing else).
    #[inline]
    pub fn since(&self) -> u64 {
        self.ring.peer_word(SINCE).unwrap_or(0)
    }

    /// Free bytes of the connection's send buffer as the stack last published them
    /// (only a hint for waiting: the stack's answer to a send is what counts).
    #[inline]
    pub fn send_room(&self) -> u64 {
        self.ring.peer_word(ROOM).unwrap_or(0)
    }

    /// Copies up to `dst.len()` waiting bytes into `dst` and returns how many (0 if
    /// none are waiting).
    #[inline]
    pub fn read(&mut self, dst: &mut [u8]) -> Result<usize, RingError> {
        let n = self.ring.read(dst)?;
        if n > 0 {
            // A read that takes the last known bytes publishes the tail at once (the
            // ring's `available` does when it finds none), not at the next read: the
            // producer then sees the ring empty and stamps the next bytes' arrival
            // (`since`). A server reads once per readiness; without this its rings
            // kept the stamps of older requests and were served out of order. A bad
            // head it finds is the next read's error: these bytes were good.
            let _ = self.ring.available();
        }
        Ok(n)
    }

    /// Skips up to `n` waiting bytes without copying them; returns how many.
    pub fn skip(&mut self, n: usize) -> Result<usize, RingError> {
        self.ring.skip(n)
    }

    /// Was a tail published since the last call? (Only then can a waiting producer
    /// have something new to hear.)
    #[inline]
    pub fn take_published(&mut self) -> bool {
        self.ring.take_published()
    }

    /// Has the producer asked to be woken at a tail we have published? (For a
    /// guaranteed answer call it after [`Reader::publish`] and a SeqCst fence, so that
    /// a producer that set `wake_at` before re-checking the tail is seen.)
    #[inline]
    pub fn producer_waits(&self) -> bool {
        match self.ring.peer_word(WAKE_AT) {
            Some(0) | None => false,
            Some(at) => self.ring.published().wrapping_sub(at) < (1 << 63),
        }
    }
}
