//! [`GateStorage`]: files on the disk's FAT volume (or in the vfs component's RAM file
//! system, guest argument `ramfs`), through the `fs` gate of the `vfs` component.
//!
//! Names and data cross in one transfer buffer of the shared heap, allocated once for
//! the vfs component; reads and writes larger than it go in chunks. Writes that fit
//! wait there and go with the next call as one `write_batch` (with the sync, if that
//! call is a sync): an autocommit INSERT's seven writes and four syncs cost four gate
//! calls, not eleven. Any other call sends the waiting writes first, so the vfs sees
//! every operation in SQLite's order. Durability is the vfs component's: `delete` and
//! `truncate` are durable when they return, `sync` writes the file's waiting writes,
//! writes the cache back and flushes the device before it returns.

use alloc::vec::Vec;

use flexos_blkdev::copy;
use flexos_kernel::gate;
use flexos_kernel::rpc::{GateError, SharedBuf};
use flexos_vfs::batch::{self, ENTRY_BYTES, Entry};
use flexos_vfs::codes::{E_BAD_FILE, E_INVALID, E_NO_SPACE, E_NOT_FOUND, E_TOO_MANY, describe};

use super::{FileId, OpenMode, Storage, StorageError};

/// Bytes of the transfer buffer: a chunk of a read or write, the data of the pending
/// writes, and the longest name.
const TRANSFER: usize = 64 * 1024;
/// Most pending writes (entries of one `write_batch` list).
const MAX_PENDING: usize = 64;

pub use flexos_vfs::Files;

/// The disk's files, through `files`.
pub struct GateStorage {
    files: Files,
    /// TRANSFER bytes in the shared heap, for the vfs component.
    buf: SharedBuf,
    /// MAX_PENDING write-list entries in the shared heap, for the vfs component.
    list: SharedBuf,
    /// Writes not sent yet; their data is at the start of `buf`, in order.
    pending: Vec<Entry>,
    /// Bytes of `buf` the pending writes use.
    pending_bytes: usize,
}

// SAFETY: the VFS's lock wants `Send` storage, but a compartment runs one thread: the
// client (a reference to this compartment's router, whose cells are not `Sync`) and the
// buffer handle are never used from another thread, because there is none.
unsafe impl Send for GateStorage {}

/// Why the storage could not be set up, or what the first call said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupError(pub i64);

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} (code {})", describe(self.0), self.0)
    }
}

/// A gate result as a value or an `fs` error code (a failed gate call is an I/O error).
fn code(result: Result<i64, GateError>) -> Result<i64, i64> {
    match result {
        Ok(v) if v >= 0 => Ok(v),
        Ok(code) => Err(code),
        Err(_) => Err(flexos_vfs::codes::E_IO),
    }
}

/// An `fs` error code as a [`StorageError`].
fn storage_error(code: i64) -> StorageError {
    match code {
        E_NOT_FOUND => StorageError::NotFound,
        E_NO_SPACE => StorageError::NoSpace,
        E_BAD_FILE => StorageError::BadHandle,
        E_INVALID => StorageError::BadName,
        // Out of file ids is a resource limit SQLite cannot fix; the medium is fine.
        E_TOO_MANY => StorageError::Io,
        _ => StorageError::Io,
    }
}

impl GateStorage {
    /// Allocates the transfer buffer and checks the volume is usable by asking whether
    /// `probe` exists: `Err` carries the code (no disk, not FAT, ...).
    pub fn connect(files: Files, vfs: u16, probe: &str) -> Result<Self, SetupError> {
        let buf = gate::shared_alloc(vfs, TRANSFER).ok_or(SetupError(flexos_vfs::codes::E_IO))?;
        let list = gate::shared_alloc(vfs, MAX_PENDING * ENTRY_BYTES)
            .ok_or(SetupError(flexos_vfs::codes::E_IO))?;
        let mut storage = GateStorage {
            files,
            buf,
            list,
            pending: Vec::with_capacity(MAX_PENDING),
            pending_bytes: 0,
        };
        let name = storage.name(probe).map_err(|_| SetupError(E_INVALID))?;
        code(storage.files.exists(name)).map_err(SetupError)?;
        Ok(storage)
    }

    /// The first `len` bytes of the transfer buffer.
    fn window(&self, len: usize) -> Result<SharedBuf, StorageError> {
        self.buf.slice(0, len as u32).ok_or(StorageError::Io)
    }

    /// `name` copied into the transfer buffer.
    fn name(&mut self, name: &str) -> Result<SharedBuf, StorageError> {
        if name.is_empty() || name.len() > TRANSFER {
            return Err(StorageError::BadName);
        }
        let window = self.window(name.len())?;
        gate::bytes(window)
            .and_then(|b| b.write(0, name.as_bytes()))
            .map_err(|_| StorageError::Io)?;
        Ok(window)
    }

    fn id(file: FileId) -> i64 {
        i64::from(file.0)
    }

    /// Sends the pending writes, and syncs `sync` in the same call if it is `Some`.
    fn send(&mut self, sync: Option<FileId>) -> Result<(), StorageError> {
        let sync_file = sync.map_or(-1, Self::id);
        if self.pending.is_empty() {
            if sync.is_some() {
                code(self.files.sync(sync_file)).map_err(storage_error)?;
            }
            return Ok(());
        }
        let mut raw = [0u8; MAX_PENDING * ENTRY_BYTES];
        for (i, e) in self.pending.iter().enumerate() {
            raw[i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES].copy_from_slice(&e.encode());
        }
        let len = self.pending.len() * ENTRY_BYTES;
        let (bytes, total) = (self.pending_bytes, self.pending_bytes as i64);
        self.pending.clear();
        self.pending_bytes = 0;
        let list = self.list.slice(0, len as u32).ok_or(StorageError::Io)?;
        gate::bytes(list)
            .and_then(|b| b.write(0, &raw[..len]))
            .map_err(|_| StorageError::Io)?;
        let data = self.window(bytes)?;
        match code(self.files.write_batch(list, data, sync_file)) {
            Ok(n) if n == total => Ok(()),
            Ok(_) => Err(StorageError::Io),
            Err(c) => Err(storage_error(c)),
        }
    }

    /// Sends the pending writes: before any call that reads or names a file, so the vfs
    /// sees the writes in the order SQLite made them.
    fn settle(&mut self) -> Result<(), StorageError> {
        self.send(None)
    }
}

/// `offset + done` as the interface's signed offset.
fn at(offset: u64, done: usize) -> Result<i64, StorageError> {
    offset
        .checked_add(done as u64)
        .and_then(|o| i64::try_from(o).ok())
        .ok_or(StorageError::NoSpace)
}

impl Storage for GateStorage {
    fn open(&mut self, name: &str, mode: OpenMode) -> Result<FileId, StorageError> {
        self.settle()?;
        if mode == OpenMode::CreateNew && self.exists(name)? {
            return Err(StorageError::AlreadyExists);
        }
        let window = self.name(name)?;
        let id =
            code(self.files.open(window, mode != OpenMode::Existing)).map_err(storage_error)?;
        u32::try_from(id).map(FileId).map_err(|_| StorageError::Io)
    }

    fn close(&mut self, file: FileId) -> Result<(), StorageError> {
        self.settle()?;
        code(self.files.close(Self::id(file))).map_err(storage_error)?;
        Ok(())
    }

    fn read_at(
        &mut self,
        file: FileId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StorageError> {
        // A waiting write to this file that ends after `offset` could change what the
        // read returns (its bytes, or the file's size); writes ending before it cannot.
        // The read lands in the transfer buffer after the waiting writes' data, so they
        // go first too if it would not fit there.
        let overlaps = self
            .pending
            .iter()
            .any(|e| e.file == file.0 && e.offset + u64::from(e.len) > offset);
        if overlaps || self.pending_bytes + buf.len().min(TRANSFER) > TRANSFER {
            self.settle()?;
        }
        let base = self.pending_bytes;
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(TRANSFER - base);
            let window = self
                .buf
                .slice(base as u32, want as u32)
                .ok_or(StorageError::Io)?;
            let n = code(
                self.files
                    .read_at(Self::id(file), at(offset, done)?, window),
            )
            .map_err(storage_error)? as usize;
            let n = n.min(want);
            gate::bytes(window)
                .and_then(|b| copy::read(&b, 0, &mut buf[done..done + n]))
                .map_err(|_| StorageError::Io)?;
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
    }

    fn write_at(&mut self, file: FileId, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        // Small writes wait in the transfer buffer for the next sync (or any other call):
        // one gate call then carries a whole commit's writes.
        if data.len() <= TRANSFER {
            at(offset, data.len())?;
            if self.pending_bytes + data.len() > TRANSFER || self.pending.len() == MAX_PENDING {
                self.settle()?;
            }
            gate::bytes(self.buf)
                .and_then(|b| copy::write(&b, self.pending_bytes, data))
                .map_err(|_| StorageError::Io)?;
            batch::push(&mut self.pending, file.0, offset, data.len() as u32);
            self.pending_bytes += data.len();
            return Ok(());
        }
        self.settle()?;
        let mut done = 0;
        while done < data.len() {
            let len = (data.len() - done).min(TRANSFER);
            let window = self.window(len)?;
            gate::bytes(window)
                .and_then(|b| copy::write(&b, 0, &data[done..done + len]))
                .map_err(|_| StorageError::Io)?;
            let n = code(
                self.files
                    .write_at(Self::id(file), at(offset, done)?, window),
            )
            .map_err(storage_error)? as usize;
            if n != len {
                return Err(StorageError::Io);
            }
            done += len;
        }
        Ok(())
    }

    fn size(&mut self, file: FileId) -> Result<u64, StorageError> {
        self.settle()?;
        let size = code(self.files.size(Self::id(file))).map_err(storage_error)?;
        Ok(size as u64)
    }

    fn truncate(&mut self, file: FileId, size: u64) -> Result<(), StorageError> {
        self.settle()?;
        let len = i64::try_from(size).map_err(|_| StorageError::NoSpace)?;
        code(self.files.truncate(Self::id(file), len)).map_err(storage_error)?;
        Ok(())
    }

    fn sync(&mut self, file: FileId) -> Result<(), StorageError> {
        self.send(Some(file))
    }

    fn delete(&mut self, name: &str) -> Result<(), StorageError> {
        self.settle()?;
        let window = self.name(name)?;
        code(self.files.delete(window)).map_err(storage_error)?;
        Ok(())
    }

    fn safe_append(&self) -> bool {
        // The vfs component writes a size only behind a barrier after the data it
        // covers (flexos_vfs::cache, "Write-back order"); on RAM nothing outlives the
        // run, so there is no order to keep.
        true
    }

    fn exists(&mut self, name: &str) -> Result<bool, StorageError> {
        self.settle()?;
        let window = self.name(name)?;
        let found = code(self.files.exists(window)).map_err(storage_error)?;
        Ok(found != 0)
    }
}
