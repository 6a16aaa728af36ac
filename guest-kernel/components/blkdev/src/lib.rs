//! The `blkdev` component: a virtio-blk driver over the virtio-mmio (version 2) window
//! the monitor gives the compartment hosting it, serving the [`blk`] interface.
//!
//! The driver is `virtio-drivers`' `VirtIOBlk`, polled (the guest takes no interrupts:
//! every request spins on the used ring). Its rings and every buffer the device sees
//! live in this compartment's heap (the data window the device can reach), never in the
//! image's .data/.bss: the data of a request is copied between the caller's shared
//! buffer and a private bounce buffer, because handing the device a `&mut [u8]` over
//! shared memory a peer may write at any time would break Rust's aliasing rules.
//!
//! The device is started on the first call, so an image that never touches the disk
//! runs without one. Errors cross as negative codes ([`request`]).
//!
//! Use from another component (`BLKDEV` is the image's `components!` id, the server a
//! static the image declares and registers with `servers!`):
//!
//! ```ignore
//! pub static BLKDEV_SERVER: blk::Server<flexos_blkdev::Driver> = flexos_blkdev::SERVER;
//! let disk = blk::Client::new(gate::router(), BLKDEV, &BLKDEV_SERVER.0);
//! let buf = gate::shared_alloc(BLKDEV, 4096)?;
//! let n = disk.read(0, buf)?; // 4096, or a negative code
//! ```

#![no_std]

#[cfg(feature = "guest")]
extern crate alloc;

#[cfg(feature = "guest")]
mod driver;
#[cfg(feature = "guest")]
mod hal;
pub mod request;

#[cfg(feature = "guest")]
pub use driver::{Driver, SERVER};
#[cfg(feature = "guest")]
use flexos_kernel::rpc::SharedBuf;

#[cfg(feature = "guest")]
flexos_kernel::rpc::interface! {
    /// A disk of 512-byte sectors. Every method returns a negative
    /// [`request`](crate::request) code on error.
    pub mod blk (id = 20) {
        /// The disk's size in sectors (0 without a device).
        fn capacity() -> u64 = 0;
        /// Reads `buf.len()` bytes (a non-zero multiple of 512) from `sector` into `buf`;
        /// returns the bytes read.
        fn read(sector: u64, buf: SharedBuf) -> i64 = 1;
        /// Writes `buf` to the disk at `sector`; returns the bytes written.
        fn write(sector: u64, buf: SharedBuf) -> i64 = 2;
        /// Waits until every completed write is durable on the device (VIRTIO_BLK_T_FLUSH);
        /// returns 0.
        fn flush() -> i64 = 3;
        /// 1 if the disk is read-only, 0 if writable.
        fn readonly() -> i64 = 4;
    }
}
