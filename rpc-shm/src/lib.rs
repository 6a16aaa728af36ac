//! Shared-memory RPC between compartments (docs/design.md, gates).
//!
//! Used by BOTH sides: the monitor lays out the shared region (writes the
//! [`Header`]) and marks crashed compartments dead; each compartment's gate layer makes
//! calls through an [`Endpoint`]. The region is mapped at the same address in every
//! compartment, has no pointers in it (only offsets), and is untrusted by everyone:
//! any compartment can write any byte of it at any time. This crate knows nothing
//! about KVM; its tests run compartments as threads.
//!
//! # Region
//!
//! [`Layout`] (a pure function of region size and compartment count, so the monitor
//! and every guest agree) cuts the region into pages: a header page (header and one
//! dead flag per compartment, written by the monitor only), one state page per
//! compartment (`sleeping`, `ready`, written by its owner only), and one *channel* per
//! unordered pair of compartments, self-pairs included: the two rings between them and
//! a heap split into one arena per side. The monitor maps into each VM only the pages
//! the compartment is a party to, read-only where it is not the writer (see
//! [`Layout::access`]), so a third compartment cannot forge replies on, read buffers
//! of, or wedge a channel between two others. [`Region::from_raw`] reads the header
//! once, checks magic, version and every field against the computed layout, and
//! keeps that private copy.
//!
//! # Rings and slots
//!
//! The ring `i -> j` has [`RING_SLOTS`] slots of one cache line each (format in
//! [`slot`]): a control word (state + seq), a word with interface and method ids, six
//! argument words. A call moves one line each way: the caller fills the slot and
//! publishes it by storing `REQUEST|seq` into the control word with **release**; the
//! callee loads the control word with **acquire**, copies the slot into private
//! memory, validates and dispatches, writes the result into word 1 and publishes
//! `REPLY_OK|seq` or `REPLY_ERR|seq` with release; the caller loads it with acquire,
//! reads word 1, and frees the slot (`EMPTY`). There is no shared index: the caller's
//! next seq and in-flight count and the callee's expected seq live in each side's
//! [`Endpoint`] (private memory), and `seq` in the control word tells the callee
//! whether a slot is the request it expects next. The caller writes only `EMPTY` and
//! `REQUEST`, the callee only `REPLY_*`.
//!
//! # Nested calls
//!
//! A caller waiting for a reply keeps serving requests that arrive for its own
//! compartment, so `A -> B -> A -> B ...` works. The callee advances its expected seq
//! when it *takes* a request, before dispatching, so a nested request on the same ring
//! (next seq, next slot) is served while the outer one is still in flight. Calls in
//! flight on one ring finish last-in first-out, so they occupy consecutive slots; a
//! call that would need more than [`RING_SLOTS`] fails with [`GateError::TooDeep`].
//!
//! # Validation
//!
//! The callee decodes a private copy of the slot ([`slot::decode_slot`], pure, never
//! panics): an unknown state word is answered with [`GateError::BadSlot`] and skipped
//! (it cannot wedge the ring or the callee), reserved bits must be zero, the
//! interface id must have a registered server ([`GateError::UnknownInterface`]), the
//! method id must exist ([`GateError::UnknownMethod`]), and every argument is decoded
//! by its [`GateSafe`] type (`2` is not a `bool`; a [`SharedBuf`] must lie inside the
//! heap of the caller's and callee's channel: [`GateError::BadHandle`]). The caller likewise rejects a malformed
//! reply ([`GateError::BadReply`]). Only [`GateSafe`] types cross a gate, checked at
//! compile time by [`interface!`]: integers, `bool`, `()`, enums declared with
//! [`gate_enum!`], and [`SharedBuf`] handles, never references or pointers.
//! Shared-heap bytes are only reached through [`SharedBytes`] (atomic copy-in /
//! copy-out; see its aliasing contract), and [`Arena`] keeps all allocator metadata in
//! private memory.
//!
//! What this does not give by itself: a peer can scribble on the rings of a channel it
//! is a party to (its own calls to and from us) and make those calls fail. It cannot
//! make any compartment using this crate panic, hang (other than by not replying to
//! its own calls) or touch memory outside the region; the monitor's per-channel
//! mappings keep it away from every other channel.
//!
//! # Idle: spinning, sleeping and the doorbell
//!
//! Waiting (for a reply, or for requests in [`Endpoint::serve_until`]) polls the rings
//! and calls [`Platform::relax`] for [`IdlePolicy::spin_rounds`] rounds. Then the
//! endpoint sleeps, with a Dekker-style handshake:
//!
//! ```text
//! sleeper                                  publisher (request or reply)
//! sleeping = 1           (relaxed)         control word = REQUEST/REPLY (release)
//! fence(SeqCst)                            fence(SeqCst)
//! re-check: my reply, incoming rings,      if peer.sleeping != 0 (relaxed)
//!           dead flags                         platform.doorbell(peer)
//! if nothing: platform.sleep(timeout)
//! sleeping = 0
//! ```
//!
//! The two SeqCst fences are totally ordered. If the sleeper's fence comes first, the
//! publisher's load after its own fence sees `sleeping == 1` and rings the doorbell;
//! if the publisher's fence comes first, the sleeper's re-check sees the published
//! word and does not sleep. Either way the wake-up cannot be lost, provided
//! [`Platform::sleep`] is latched: a doorbell rung between the re-check and the actual
//! sleep must make that sleep return at once (thread park tokens, an eventfd, and the
//! monitor's sleep hypercall behave like this). The sleep timeout only bounds how late
//! a compartment notices a dead peer or a `stop` condition nobody rings for.
//!
//! # Cost
//!
//! On the development host (2 cores, cross-core cache-line round trip ~65 ns in the
//! same run) a remote call with no arguments takes ~86 ns round trip (~1.3x the
//! cache-line baseline, ~11 M calls/s), see `tests/rpc.rs`
//! (`million_calls_with_nested_callbacks`, printed with `--nocapture`). The hot path
//! is inlined across crates (`#[inline]` on the layout and slot helpers): keep it so.
//! A co-located call through a generated client is a direct call behind one branch.
//!
//! # Bulk data: the SPSC ring
//!
//! [`spsc`] is the one single-producer single-consumer ring of the shared heap (bytes
//! or 64-bit words, head and tail in their own cache lines, every peer index checked):
//! net's socket byte streams and netdev's relay rings are built on it. Its docs say
//! why the call rings above are not.
//!
//! # Peer death
//!
//! The monitor stores 1 in the dead flag of a crashed compartment
//! ([`Layout::dead_flag_offset`]). A caller checks the target's flag before posting
//! and on every round while waiting, and returns [`GateError::PeerDead`]; a server
//! that propagates it lets the whole chain unwind.

#![no_std]

#[cfg(test)]
extern crate std;

mod arena;
mod endpoint;
mod error;
mod gate;
mod interface;
mod layout;
mod region;
mod route;
pub mod slot;
pub mod spsc;

pub use arena::{Arena, ARENA_WORDS, MAX_BLOCKS, MIN_BLOCK};
pub use endpoint::{
    Background, Dispatch, Endpoint, IdlePolicy, Platform, Stats, DEDICATED_SPIN_ROUNDS,
    DEFAULT_SLEEP_US, DEFAULT_SPIN_ROUNDS, MAX_INTERFACES,
};
pub use error::{GateError, LayoutError};
pub use gate::{GateSafe, SharedBuf};
pub use layout::{
    channel_count, Access, Header, HeapBounds, Layout, Part, PartKind, ARENA_ALIGN, DEAD_OFFSET,
    HEADER_SIZE, LINE, MAGIC, MAX_COMPARTMENTS, MAX_REGION, MIN_ARENA, PAGE, RING_BYTES,
    RING_SLOTS, STATES_OFFSET, VERSION,
};
pub use region::{Region, SharedBytes};
pub use route::{Placement, Route, Router};
pub use slot::ARGS;
