//! The `vfs` component: a FAT file system over the `blk` interface (the `blkdev`
//! component), serving the `fs` interface. See [`volume`] for what each method does and
//! when data reaches the device.
//!
//! The plain-Rust parts ([`cache`], [`names`], [`codes`], [`volume`]) build without the
//! `guest` feature and are tested on the host by
//! guest-kernel/components/units.

#![no_std]

extern crate alloc;

pub mod batch;
pub mod cache;
pub mod codes;
pub mod files;
pub mod names;
pub mod ramfs;
pub mod volume;

#[cfg(feature = "guest")]
mod server;
#[cfg(feature = "guest")]
use flexos_kernel::rpc::SharedBuf;
#[cfg(feature = "guest")]
pub use server::Vfs;

#[cfg(feature = "guest")]
flexos_kernel::rpc::interface! {
    /// Files in the root directory of the disk's FAT volume. Names cross as UTF-8 bytes
    /// in a shared buffer; file ids are small non-negative integers; every method
    /// returns a negative [`codes`](crate::codes) value on error. The volume is mounted
    /// on the first call; a disk that holds no FAT volume makes every call return
    /// `E_NOT_FAT` (and says so once on the console).
    pub mod fs (id = 21) {
        /// Opens `name` (creating it, empty, if `create` and it is missing); returns its id.
        fn open(name: SharedBuf, create: bool) -> i64 = 0;
        /// Reads up to `buf.len()` bytes at `offset` into `buf`; returns how many (0 at
        /// the end of the file).
        fn read_at(file: i64, offset: i64, buf: SharedBuf) -> i64 = 1;
        /// Writes `buf` at `offset` (zero-filling a gap past the end); returns its length.
        fn write_at(file: i64, offset: i64, buf: SharedBuf) -> i64 = 2;
        /// The file's size in bytes.
        fn size(file: i64) -> i64 = 3;
        /// Sets the file's size to `len`; durable when it returns 0.
        fn truncate(file: i64, len: i64) -> i64 = 4;
        /// Makes the file's data and size durable (cache written back, device flushed).
        fn sync(file: i64) -> i64 = 5;
        /// Deletes `name`; durable when it returns 0.
        fn delete(name: SharedBuf) -> i64 = 6;
        /// 1 if `name` exists, 0 if not.
        fn exists(name: SharedBuf) -> i64 = 7;
        /// Closes a file id.
        fn close(file: i64) -> i64 = 8;
        /// Lists the root directory into `buf` (`name<TAB>size` lines, `name/` for a
        /// directory); returns the listing's full length (larger than `buf`: cut).
        fn list(buf: SharedBuf) -> i64 = 9;
        /// Carries out the writes of `list` (see [`batch`](crate::batch)) with their
        /// data from `data`, in order, then, if `sync_file` is an open file id (not
        /// negative), syncs it as [`sync`](Api::sync) does: a commit's writes and its
        /// sync in one call. Returns the bytes written, or the first error (the writes
        /// before it are done).
        fn write_batch(list: SharedBuf, data: SharedBuf, sync_file: i64) -> i64 = 10;
    }
}
