//! Single-producer single-consumer rings of 64-bit entries in shared memory, through
//! which the driver and a `net` component in another compartment pass buffer ids
//! (received frames, buffers given back, frames to send, sent frames) without a gate
//! call per frame: plain Rust, tested on the host.
//!
//! Layout of one ring (offsets in its part of the buffer; each index word written by
//! one side only, every word with 8-byte atomics):
//!
//! ```text
//!   0  head   entries ever pushed (producer)
//!  64  tail   entries ever popped (consumer)
//! 128  slots  `capacity` entries of 8 bytes (a power of two)
//! ```
//!
//! Neither side trusts the other's index: a head or tail that would put more than
//! `capacity` entries in the ring (or move backwards) is [`RelayError::Corrupt`], and
//! every slot access is bounds-checked by [`SharedBytes`]; entries themselves are
//! validated by their users (a buffer id must be one they lent).

use rpc_shm::SharedBytes;

const HEAD: usize = 0;
const TAIL: usize = 64;
const SLOTS: usize = 128;

/// Bytes of a ring of `capacity` entries.
pub const fn ring_len(capacity: usize) -> usize {
    SLOTS + capacity * 8
}

/// What went wrong with a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayError {
    /// The area is too small for the capacity, or the capacity is not a power of two.
    BadSize,
    /// The peer's index is impossible.
    Corrupt,
}

/// The ring at `at .. at + ring_len(capacity)` of `bytes`, checked.
fn check(bytes: &SharedBytes<'_>, at: usize, capacity: usize) -> Result<(), RelayError> {
    let end = at
        .checked_add(ring_len(capacity))
        .ok_or(RelayError::BadSize)?;
    if capacity == 0 || !capacity.is_power_of_two() || end > bytes.len() || !at.is_multiple_of(8) {
        return Err(RelayError::BadSize);
    }
    Ok(())
}

/// The producing side.
pub struct Producer<'r> {
    bytes: SharedBytes<'r>,
    at: usize,
    cap: u64,
    head: u64,
    tail_seen: u64,
}

impl<'r> Producer<'r> {
    /// The producer of the ring at `at` in `bytes`, which must be zeroed (fresh).
    pub fn new(bytes: SharedBytes<'r>, at: usize, capacity: usize) -> Result<Self, RelayError> {
        check(&bytes, at, capacity)?;
        Ok(Producer {
            bytes,
            at,
            cap: capacity as u64,
            head: 0,
            tail_seen: 0,
        })
    }

    /// Entries pushed and not yet popped.
    pub fn len(&mut self) -> Result<usize, RelayError> {
        let tail = self
            .bytes
            .load_u64(self.at + TAIL)
            .ok_or(RelayError::Corrupt)?;
        if tail.wrapping_sub(self.tail_seen) > self.head.wrapping_sub(self.tail_seen) {
            return Err(RelayError::Corrupt);
        }
        self.tail_seen = tail;
        Ok(self.head.wrapping_sub(tail) as usize)
    }

    /// Is the ring empty (everything pushed was popped)?
    pub fn is_empty(&mut self) -> Result<bool, RelayError> {
        Ok(self.len()? == 0)
    }

    /// Pushes `value`; `Ok(false)` if the ring is full.
    pub fn push(&mut self, value: u64) -> Result<bool, RelayError> {
        if self.len()? as u64 >= self.cap {
            return Ok(false);
        }
        let slot = self.at + SLOTS + (self.head % self.cap) as usize * 8;
        self.bytes.store_u64(slot, value);
        self.head = self.head.wrapping_add(1);
        self.bytes.store_u64(self.at + HEAD, self.head);
        Ok(true)
    }
}

/// The consuming side.
pub struct Consumer<'r> {
    bytes: SharedBytes<'r>,
    at: usize,
    cap: u64,
    tail: u64,
}

impl<'r> Consumer<'r> {
    /// The consumer of the ring at `at` in `bytes`, which must be zeroed (fresh).
    pub fn new(bytes: SharedBytes<'r>, at: usize, capacity: usize) -> Result<Self, RelayError> {
        check(&bytes, at, capacity)?;
        Ok(Consumer {
            bytes,
            at,
            cap: capacity as u64,
            tail: 0,
        })
    }

    /// Entries waiting.
    pub fn len(&self) -> Result<usize, RelayError> {
        let head = self
            .bytes
            .load_u64(self.at + HEAD)
            .ok_or(RelayError::Corrupt)?;
        let n = head.wrapping_sub(self.tail);
        if n > self.cap {
            return Err(RelayError::Corrupt);
        }
        Ok(n as usize)
    }

    /// Is nothing waiting?
    pub fn is_empty(&self) -> Result<bool, RelayError> {
        Ok(self.len()? == 0)
    }

    /// The next entry, if any.
    pub fn pop(&mut self) -> Result<Option<u64>, RelayError> {
        if self.len()? == 0 {
            return Ok(None);
        }
        let slot = self.at + SLOTS + (self.tail % self.cap) as usize * 8;
        let value = self.bytes.load_u64(slot).ok_or(RelayError::Corrupt)?;
        self.tail = self.tail.wrapping_add(1);
        self.bytes.store_u64(self.at + TAIL, self.tail);
        Ok(Some(value))
    }
}

/// Entries per ring of the driver's control block.
pub const RELAY_ENTRIES: usize = 64;
/// Offset of the `waiting` word (net: "wake me when a frame comes").
pub const CTRL_WAITING: usize = 0;
/// Offsets of the four rings: received frames (driver -> net: `id << 32 | length`),
/// receive buffers given back (net -> driver: id), frames to send (net -> driver:
/// `slot << 32 | length`), sent frames (driver -> net: slot).
pub const CTRL_RECEIVED: usize = 64;
pub const CTRL_RELEASED: usize = CTRL_RECEIVED + ring_len(RELAY_ENTRIES);
pub const CTRL_SEND: usize = CTRL_RELEASED + ring_len(RELAY_ENTRIES);
pub const CTRL_SENT: usize = CTRL_SEND + ring_len(RELAY_ENTRIES);
/// Bytes of the control block.
pub const CTRL_LEN: usize = CTRL_SENT + ring_len(RELAY_ENTRIES);
/// Transmit slots in the shared transmit area, and the bytes of each.
pub const TX_SLOTS: usize = 32;
pub const TX_SLOT: usize = 1536;
