//! [`Files`]: the `fs` interface minus the gate, as both file systems behind it give it
//! (the FAT [`Volume`](crate::volume::Volume) and the [`RamFs`](crate::ramfs::RamFs)).
//! The server picks one per run and calls it through this trait; the host tests run one
//! suite of checks against both, so the two keep the same semantics.
//!
//! Every method returns a negative [`codes`](crate::codes) value on error. Names reach
//! here already checked by [`names::check`](crate::names::check) (the server does it
//! before it takes the file system's lock).

use alloc::string::String;

/// Files in one flat directory, addressed by small integer ids.
pub trait Files {
    /// Opens `name` (creating it, empty, if `create` and it does not exist); returns its
    /// id: the lowest free one, at most [`MAX_OPEN`](crate::volume::MAX_OPEN) at once.
    fn open(&mut self, name: &str, create: bool) -> i64;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end).
    fn read_at(&mut self, id: i64, offset: u64, buf: &mut [u8]) -> i64;
    /// Writes `data` at `offset` (a gap past the end is filled with zeros, even for an
    /// empty `data`); returns the bytes written.
    fn write_at(&mut self, id: i64, offset: u64, data: &[u8]) -> i64;
    /// The file's size in bytes.
    fn size(&mut self, id: i64) -> i64;
    /// Sets the file's size to `len` (cutting, or zero-filling); durable on 0.
    fn truncate(&mut self, id: i64, len: u64) -> i64;
    /// Makes the file's data and size durable.
    fn sync(&mut self, id: i64) -> i64;
    /// Deletes `name`, closing every id still open on it; durable on 0.
    fn delete(&mut self, name: &str) -> i64;
    /// Renames `from` to `to`, replacing a file called `to`; durable on 0. Both must
    /// be closed (`E_BUSY` otherwise): an open id stays on the name it was opened by.
    fn rename(&mut self, from: &str, to: &str) -> i64;
    /// 1 if `name` exists, 0 if not.
    fn exists(&mut self, name: &str) -> i64;
    /// Closes an id.
    fn close(&mut self, id: i64) -> i64;
    /// The directory, one `name<TAB>size` line per file.
    fn list(&mut self) -> Result<String, i64>;
}
