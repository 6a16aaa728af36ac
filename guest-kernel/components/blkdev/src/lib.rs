//! The `blkdev` component: a virtio-blk driver over the virtio-mmio (version 2) window
//! the monitor gives the compartment hosting it, serving the [`blk`] interface.
//!
//! The driver is ours, on the guest's virtio core (`flexos_virtio`: the handshake and the
//! split queue, shared with netdev); what is virtio-blk's is [`virtq`]: one queue,
//! polled (the guest takes no interrupts: a call spins on the used ring), a batch of
//! requests published with one index update and a kick only when the device asked for
//! one with RING_EVENT_IDX (it polls while requests keep coming, so most batches cost
//! no exit). Its rings live in
//! this compartment's heap (the data window the device can reach). The data never
//! passes through this component: the device reads and fills the caller's shared
//! buffer itself (the monitor gives the device every shared page this compartment may
//! write), so nothing here forms a Rust reference to shared memory. A batched write
//! ([`blk::Client::write_extents`], an [`extents`] list) writes many runs of sectors
//! and flushes in one call: what the file system's write-back needs at a sync.
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

extern crate alloc;

#[cfg(feature = "guest")]
pub mod copy;
#[cfg(feature = "guest")]
mod driver;
pub mod extents;
pub mod request;
pub mod virtq;

#[cfg(feature = "guest")]
pub use driver::{Driver, SERVER};
#[cfg(feature = "guest")]
use flexos_kernel::rpc::SharedBuf;

#[cfg(feature = "guest")]
flexos_kernel::rpc::interface! {
    /// A disk of 512-byte sectors. Every method returns a negative
    /// [`request`](crate::request) code on error. Data moves straight between the disk
    /// and the shared buffers passed in.
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
        /// Writes every extent of `list` (see [`extents`](crate::extents)) from `data`,
        /// all posted at once, then, if `flush`, flushes: when it returns the bytes
        /// written (the sum of the extents), they are durable. Nothing is written if an
        /// extent is malformed.
        fn write_extents(list: SharedBuf, data: SharedBuf, flush: bool) -> i64 = 5;
    }
}
