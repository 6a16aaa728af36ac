//! The `netdev` component: a split-queue virtio-net driver over the virtio-mmio
//! (version 2) window the monitor gives the compartment hosting it.
//!
//! Its own driver rather than `virtio-drivers`, whose feature set is fixed and cannot
//! negotiate GUEST_TSO4 / GUEST_CSUM: with them the host hands over TCP super-frames of
//! up to 64 KiB, 40x fewer frames than MTU-sized ones (see shared/DEVICES.md). The
//! driver hands whole frames to the stack and never takes interrupts ([`driver`]).
//!
//! [`frame`] (the virtio-net header and checksum checks) is plain Rust and builds
//! without the `guest` feature, so it is tested on the host (components/units).

#![no_std]

#[cfg(feature = "guest")]
extern crate alloc;

#[cfg(feature = "guest")]
pub mod driver;
pub mod frame;
#[cfg(feature = "guest")]
pub mod mmio;
#[cfg(feature = "guest")]
mod queue;

#[cfg(feature = "guest")]
pub use driver::{HeapRx, NetDevice, RxMemory, StartError};
