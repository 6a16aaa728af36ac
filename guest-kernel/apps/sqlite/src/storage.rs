//! The file interface the SQLite VFS ([`crate::vfs`]) runs on.
//!
//! It is the interface the file-system component will export through gates, so it is
//! kept to what a gate can carry: files are named by flat strings and reached through
//! small integer handles, data moves in byte ranges, and nothing holds a pointer into
//! the other side. [`gate::GateStorage`] implements it over the `fs` gate of the vfs
//! component (the disk), [`mem::MemStorage`] in this compartment's heap.

pub mod gate;
pub mod mem;

use core::fmt;

/// An open file, as the storage numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId(pub u32);

/// How [`Storage::open`] treats a file that does (not) exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Open the file, creating it empty if it does not exist.
    OrCreate,
    /// Create the file; it must not exist yet.
    CreateNew,
}

/// Why a storage operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// No file has that name (or the handle's file was deleted).
    NotFound,
    /// [`OpenMode::CreateNew`] on a name that exists.
    AlreadyExists,
    /// No space left for the data.
    NoSpace,
    /// The handle is not open.
    BadHandle,
    /// The name is empty or otherwise unusable.
    BadName,
    /// The medium failed.
    Io,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageError::NotFound => "no such file",
            StorageError::AlreadyExists => "file exists",
            StorageError::NoSpace => "no space left",
            StorageError::BadHandle => "bad file handle",
            StorageError::BadName => "bad file name",
            StorageError::Io => "I/O error",
        })
    }
}

/// Files by name, the operations SQLite's VFS needs and nothing more.
///
/// Durability contract (what SQLite's commit protocol relies on): data written before a
/// [`Storage::sync`] of that file, and a [`Storage::delete`] or [`Storage::truncate`]
/// itself, have reached the medium when the call returns.
pub trait Storage {
    /// Opens `name` as `mode` says and returns a handle for the other calls.
    fn open(&mut self, name: &str, mode: OpenMode) -> Result<FileId, StorageError>;
    /// Releases a handle.
    fn close(&mut self, file: FileId) -> Result<(), StorageError>;
    /// Reads from `offset` into `buf`; returns how many bytes there were, less than
    /// `buf.len()` only at the end of the file.
    fn read_at(&mut self, file: FileId, offset: u64, buf: &mut [u8])
    -> Result<usize, StorageError>;
    /// Writes all of `data` at `offset`, growing the file (with zeros up to `offset`)
    /// as needed. A storage may hold the write back and carry it out with its next
    /// call (GateStorage does, to send a commit's writes with its sync): its error then
    /// comes from that call, at the latest from the `sync` that makes it durable.
    fn write_at(&mut self, file: FileId, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// The file's size in bytes.
    fn size(&mut self, file: FileId) -> Result<u64, StorageError>;
    /// Sets the file's size: cuts it, or grows it with zeros.
    fn truncate(&mut self, file: FileId, size: u64) -> Result<(), StorageError>;
    /// Makes the file's data and size durable.
    fn sync(&mut self, file: FileId) -> Result<(), StorageError>;
    /// Removes `name`; durable on return.
    fn delete(&mut self, name: &str) -> Result<(), StorageError>;
    /// Whether a file called `name` exists.
    fn exists(&mut self, name: &str) -> Result<bool, StorageError>;
    /// Whether a crash (of the run or of the host) can never leave a file's size
    /// covering bytes that were not written: SQLite's SQLITE_IOCAP_SAFE_APPEND, which
    /// saves it a journal sync per commit.
    fn safe_append(&self) -> bool {
        false
    }
}
