//! The guest's virtio core: what every virtio driver of the library OS needs, written
//! once. The blkdev (virtio-blk) and netdev (virtio-net) components are built on it.
//!
//! - [`mmio`]: the virtio-mmio (version 2) register window ([`mmio::Regs`]) behind the
//!   [`mmio::Transport`] trait, with the register offsets, status and common feature
//!   bits;
//! - [`device`]: the initialisation sequence ([`device::Device`]: reset, feature
//!   negotiation, queue setup, DRIVER_OK, FAILED on any error), configuration reads and
//!   notifications;
//! - [`queue`]: the split virtqueue ([`queue::SplitQueue`]: descriptors, available and
//!   used rings, EVENT_IDX in both directions) for a guest that polls and takes no
//!   interrupts.
//!
//! A driver keeps only what is its device's: its feature bits, what its buffers and
//! descriptor chains look like, and its request protocol.
//!
//! Not a component: it serves no interface and holds no state of its own. It sits in
//! `components/` beside the drivers that use it (as `units`, the host tests, does) and
//! depends on nothing but the abi crate (no kernel), so it builds for the host too and
//! `components/units` tests the handshake against a model device and the queue against
//! a device thread.

#![no_std]

extern crate alloc;

pub mod device;
pub mod mmio;
pub mod queue;

pub use device::{Device, StartError};
pub use queue::{DeviceView, SplitQueue};
