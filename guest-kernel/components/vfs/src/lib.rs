//! The `vfs` component: files served through the `fs` interface, from one of two file
//! systems chosen once per run, at the first call:
//!
//! - by default a FAT file system ([`volume`]) on the disk of the `blkdev` component,
//!   through the `blk` interface; see [`volume`] for what each method does and when
//!   data reaches the device;
//! - with the guest argument `ramfs`, a RAM file system ([`ramfs`]) in this
//!   compartment's heap, bounded by `vfs.ramfs=MiB` (default: half the heap). No disk
//!   is needed and `blkdev` is never called; if the run has one anyway, the first call
//!   says once on the console `vfs: ramfs: the disk is not used`. `-c 2 sqlite.elf --
//!   bench ramfs` is then {app} | {vfs on RAM}: FlexOS's EPT2 SQLite configuration.
//!
//! Both have the same semantics ([`files::Files`]; the host tests run one suite against
//! both), the same name rules ([`names`]) and codes ([`codes`]): a full RAM file system
//! returns `E_NO_SPACE` as a full disk does.
//!
//! Files on the disk are stamped with the host's time of day ([`clock`]: the monitor
//! passes its wall clock at boot).
//!
//! The plain-Rust parts ([`cache`], [`names`], [`codes`], [`volume`], [`ramfs`],
//! [`batch`], [`clock`]) build without the `guest` feature and are tested on the host by
//! guest-kernel/components/units.

#![no_std]

extern crate alloc;

pub mod batch;
pub mod cache;
pub mod clock;
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
    /// Files in the root directory of the disk's FAT volume, or of the RAM file system
    /// with the guest argument `ramfs`. Names cross as UTF-8 bytes in a shared buffer;
    /// file ids are small non-negative integers; every method returns a negative
    /// [`codes`](crate::codes) value on error. The file system is chosen (the volume
    /// mounted) on the first call; a disk that holds no FAT volume makes every call
    /// return `E_NOT_FAT` (and says so once on the console). On RAM, "durable" means
    /// done: `sync` succeeds at once.
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
        /// Renames `from` to `to`, replacing a file called `to`; durable when it
        /// returns 0. Both names must be closed (`E_BUSY`).
        fn rename(from: SharedBuf, to: SharedBuf) -> i64 = 11;
    }
}

/// The `fs` client an app calls the vfs component through.
#[cfg(feature = "guest")]
pub type Files = fs::Client<'static, Vfs, flexos_kernel::gate::GateRouter>;

/// What [`app!`] expands to refers to these.
#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod __app {
    pub use flexos_blkdev as blkdev;
    pub use flexos_kernel as kernel;
}

/// The prologue of an image whose app works on files through this component and
/// `blkdev`: the image's components (`APP`, `VFS`, `BLKDEV`) and default splits, the
/// two servers, and `fn files() -> Files`, the app's client of the `fs` interface.
///
/// Splits: 1 = everything; 2 = {app} | {vfs, blkdev}; 3 = {app} | {vfs} | {blkdev}.
/// (With the guest argument `ramfs`, 2 is {app} | {vfs on RAM}.)
///
/// ```ignore
/// flexos_kernel::main!(main);
/// flexos_vfs::app!();
///
/// fn main(args: &Args) -> i32 {
///     let files = files();
///     // files.open(name, true), files.write_at(..), ...
/// }
/// ```
#[cfg(feature = "guest")]
#[macro_export]
macro_rules! app {
    () => {
        $crate::__app::kernel::components! {
            components: [APP = "app", VFS = "vfs", BLKDEV = "blkdev"],
            splits: [
                [("all", ["app", "vfs", "blkdev"])],
                [("app", ["app"]), ("fs", ["vfs", "blkdev"])],
                [("app", ["app"]), ("vfs", ["vfs"]), ("blkdev", ["blkdev"])],
            ],
        }

        /// The file system, over the disk of the `blkdev` component.
        static VFS_SERVER: $crate::fs::Server<$crate::Vfs> =
            $crate::fs::Server($crate::Vfs::new(BLKDEV));

        const _: () = {
            use $crate::__app::blkdev::{SERVER as BLKDEV_SERVER, blk};
            use $crate::fs;
            $crate::__app::kernel::servers! {
                VFS => fs(VFS_SERVER),
                BLKDEV => blk(BLKDEV_SERVER),
            }
        };

        /// The app's client of the vfs component.
        fn files() -> $crate::Files {
            $crate::fs::Client::new($crate::__app::kernel::gate::router(), VFS, &VFS_SERVER.0)
        }
    };
}
