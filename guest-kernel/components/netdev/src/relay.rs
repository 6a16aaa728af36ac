//! Single-producer single-consumer rings of 64-bit entries in shared memory, through
//! which the driver and a `net` component in another compartment pass buffer ids
//! (received frames, buffers given back, frames to send, sent frames) without a gate
//! call per frame: plain Rust, tested on the host.
//!
//! Each ring is rpc-shm's [`spsc`](rpc_shm::spsc) ring of words (head at 0, tail at 64,
//! `capacity` entries of 8 bytes from 128), four of them in one control block after
//! the `waiting` word. Neither side trusts the other's index (an impossible one is
//! [`RelayError::Corrupt`]), and every slot access is bounds-checked; entries
//! themselves are validated by their users (a buffer id must be one they lent).

use rpc_shm::spsc;

/// The producing side of a relay ring (`Producer::new(ctrl, at, RELAY_ENTRIES)`).
pub type Producer<'r> = spsc::Producer<'r, u64>;
/// The consuming side of a relay ring.
pub type Consumer<'r> = spsc::Consumer<'r, u64>;
/// What went wrong with a ring: `BadSize` (a layout that does not fit) or `Corrupt`
/// (the peer's index is impossible).
pub use rpc_shm::spsc::RingError as RelayError;

/// Bytes of a ring of `capacity` entries.
pub const fn ring_len(capacity: usize) -> usize {
    spsc::ring_len::<u64>(capacity)
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
