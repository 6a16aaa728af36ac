//! The `netdev` component: a split-queue virtio-net driver over the virtio-mmio
//! (version 2) window the monitor gives the compartment hosting it.
//!
//! Its own driver rather than `virtio-drivers`, whose feature set is fixed and cannot
//! negotiate GUEST_TSO4 / GUEST_CSUM: with them the host hands over TCP super-frames of
//! up to 64 KiB, 40x fewer frames than MTU-sized ones (docs/devices.md). The
//! driver hands whole frames to the stack and never takes interrupts ([`driver`]). The
//! device handshake and the split queues are the guest's virtio core (`flexos_virtio`,
//! shared with blkdev); what is virtio-net's is here: its feature bits, the receive and
//! transmit buffers, the header.
//!
//! In the 3-way split it serves the [`nic`] interface to the `net` component
//! (`server`). [`frame`] (the virtio-net header and checksum checks) and [`relay`] (the rings
//! between the driver and net) are plain Rust and build
//! without the `guest` feature, so they are tested on the host (components/units).

#![no_std]

#[cfg(feature = "guest")]
extern crate alloc;

pub mod codes;
#[cfg(feature = "guest")]
pub mod driver;
pub mod frame;
#[cfg(feature = "guest")]
pub mod mmio;
pub mod relay;
#[cfg(feature = "guest")]
mod server;

#[cfg(feature = "guest")]
pub use driver::{HeapRx, NetDevice, RxMemory, StartError};
#[cfg(feature = "guest")]
use flexos_kernel::rpc::SharedBuf;
#[cfg(feature = "guest")]
pub use server::Netdev;

#[cfg(feature = "guest")]
flexos_kernel::rpc::interface! {
    /// The driver for a `net` component in another compartment. Every method returns
    /// a negative [`codes`](crate::codes) value on error.
    pub mod nic (id = 23) {
        /// Starts the device (once) and attaches the caller: its zeroed control block
        /// (`relay::CTRL_LEN` bytes: the `waiting` word and four relay rings) and its
        /// transmit area (`TX_SLOTS` slots of `TX_SLOT` bytes); returns the number of
        /// receive buffers.
        fn attach(ctrl: SharedBuf, tx_area: SharedBuf) -> i64 = 0;
        /// The MAC address (6 bytes, big-endian in the low 48 bits).
        fn mac() -> u64 = 1;
        /// Receive buffer `id` (virtio-net header first); an empty handle if none.
        fn rx_buffer(id: u16) -> SharedBuf = 2;
        /// A counter: 0 frames received, 1 bytes received, 2 frames sent, 3 kicks.
        fn stat(which: u16) -> i64 = 5;
    }
}
