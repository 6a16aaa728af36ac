//! The io methods of a file the VFS opened: reads and writes go to the [`Storage`]
//! handle xOpen got; locks are only remembered (see the parent module).
//!
//! [`Storage`]: crate::storage::Storage

use alloc::string::String;
use core::ffi::{c_int, c_void};

use libsqlite3_sys::{
    SQLITE_IOCAP_SAFE_APPEND, SQLITE_IOERR, SQLITE_IOERR_FSTAT, SQLITE_IOERR_FSYNC,
    SQLITE_IOERR_READ, SQLITE_IOERR_SHORT_READ, SQLITE_IOERR_TRUNCATE, SQLITE_IOERR_WRITE,
    SQLITE_LOCK_RESERVED, SQLITE_NOTFOUND, SQLITE_OK, SQLITE_READONLY, sqlite3_file, sqlite3_int64,
    sqlite3_io_methods,
};

use super::{io_code, with_storage};
use crate::storage::FileId;

/// What SQLite pads journal headers to; FAT clusters here are 4 KiB.
const SECTOR_SIZE: c_int = 4096;

/// The methods of every open file.
pub(super) static IO_METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// SQLite's `sqlite3_file` for us: it allocates `szOsFile` bytes and hands them to
/// xOpen, then passes the same pointer to every io method.
#[repr(C)]
pub(super) struct OpenFile {
    /// Must come first: SQLite sees only this part.
    pub(super) base: sqlite3_file,
    pub(super) id: FileId,
    /// The lock level SQLite last asked for (SQLITE_LOCK_*).
    pub(super) lock: c_int,
    pub(super) readonly: bool,
    /// The name to delete on close (SQLITE_OPEN_DELETEONCLOSE).
    pub(super) delete_on_close: Option<String>,
}

/// Our state behind an `sqlite3_file` that xOpen filled in.
///
/// # Safety
///
/// `file` was opened by [`x_open`] successfully and not closed yet.
unsafe fn open_file<'a>(file: *mut sqlite3_file) -> &'a mut OpenFile {
    // SAFETY: SQLite allocated `szOsFile` = size_of::<OpenFile>() bytes (8-aligned) and
    // x_open initialised all of them as an OpenFile; SQLite uses one file from one
    // thread, so this is the only reference while the callback runs.
    unsafe { &mut *file.cast::<OpenFile>() }
}

unsafe extern "C" fn x_close(file: *mut sqlite3_file) -> c_int {
    // SAFETY: SQLite closes only files x_open opened, once; after this it frees the
    // buffer without looking at our part, so we move our state out (and drop it).
    let state = unsafe { file.cast::<OpenFile>().read() };
    // SAFETY: as above; marks the file closed for anyone who looks again.
    unsafe { (*file).pMethods = core::ptr::null() };
    let closed = with_storage(|s| s.close(state.id));
    let deleted = match &state.delete_on_close {
        Some(name) => with_storage(|s| s.delete(name)),
        None => Ok(()),
    };
    match (closed, deleted) {
        (Ok(()), Ok(())) => SQLITE_OK,
        _ => SQLITE_IOERR,
    }
}

unsafe extern "C" fn x_read(
    file: *mut sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: sqlite3_int64,
) -> c_int {
    // SAFETY: an open file (SQLite calls io methods only between xOpen and xClose).
    let f = unsafe { open_file(file) };
    let (Ok(len), Ok(offset)) = (usize::try_from(amount), u64::try_from(offset)) else {
        return SQLITE_IOERR_READ;
    };
    // SAFETY: SQLite passes a writable buffer of `amount` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    match with_storage(|s| s.read_at(f.id, offset, buf)) {
        Ok(n) if n >= len => SQLITE_OK,
        Ok(n) => {
            // SQLite relies on the rest being zeros after a short read.
            buf[n..].fill(0);
            SQLITE_IOERR_SHORT_READ
        }
        Err(err) => io_code(err, SQLITE_IOERR_READ),
    }
}

unsafe extern "C" fn x_write(
    file: *mut sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: sqlite3_int64,
) -> c_int {
    // SAFETY: an open file.
    let f = unsafe { open_file(file) };
    if f.readonly {
        return SQLITE_READONLY;
    }
    let (Ok(len), Ok(offset)) = (usize::try_from(amount), u64::try_from(offset)) else {
        return SQLITE_IOERR_WRITE;
    };
    // SAFETY: SQLite passes a readable buffer of `amount` bytes.
    let data = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    match with_storage(|s| s.write_at(f.id, offset, data)) {
        Ok(()) => SQLITE_OK,
        Err(err) => io_code(err, SQLITE_IOERR_WRITE),
    }
}

unsafe extern "C" fn x_truncate(file: *mut sqlite3_file, size: sqlite3_int64) -> c_int {
    // SAFETY: an open file.
    let f = unsafe { open_file(file) };
    let Ok(size) = u64::try_from(size) else {
        return SQLITE_IOERR_TRUNCATE;
    };
    match with_storage(|s| s.truncate(f.id, size)) {
        Ok(()) => SQLITE_OK,
        Err(err) => io_code(err, SQLITE_IOERR_TRUNCATE),
    }
}

unsafe extern "C" fn x_sync(file: *mut sqlite3_file, _flags: c_int) -> c_int {
    // SAFETY: an open file.
    let f = unsafe { open_file(file) };
    match with_storage(|s| s.sync(f.id)) {
        Ok(()) => SQLITE_OK,
        Err(err) => io_code(err, SQLITE_IOERR_FSYNC),
    }
}

unsafe extern "C" fn x_file_size(file: *mut sqlite3_file, size: *mut sqlite3_int64) -> c_int {
    // SAFETY: an open file.
    let f = unsafe { open_file(file) };
    match with_storage(|s| s.size(f.id)) {
        Ok(n) => {
            // SAFETY: SQLite passes a valid i64 pointer.
            unsafe { *size = i64::try_from(n).unwrap_or(i64::MAX) };
            SQLITE_OK
        }
        Err(err) => io_code(err, SQLITE_IOERR_FSTAT),
    }
}

unsafe extern "C" fn x_lock(file: *mut sqlite3_file, level: c_int) -> c_int {
    // One connection in one compartment: every lock is granted; remembered for
    // xCheckReservedLock.
    // SAFETY: an open file.
    unsafe { open_file(file) }.lock = level;
    SQLITE_OK
}

unsafe extern "C" fn x_unlock(file: *mut sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open file.
    unsafe { open_file(file) }.lock = level;
    SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut sqlite3_file, res_out: *mut c_int) -> c_int {
    // SAFETY: an open file.
    let f = unsafe { open_file(file) };
    // SAFETY: SQLite passes a valid int pointer.
    unsafe { *res_out = c_int::from(f.lock >= SQLITE_LOCK_RESERVED) };
    SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    _file: *mut sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    // No file controls: SQLite falls back to its defaults for every one.
    SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_file: *mut sqlite3_file) -> c_int {
    SECTOR_SIZE
}

unsafe extern "C" fn x_device_characteristics(_file: *mut sqlite3_file) -> c_int {
    // Only what the storage guarantees: SAFE_APPEND from the disk's vfs (its size
    // writes follow the data, see Storage::safe_append); never atomic or sequential
    // writes, which its write-back cache does not keep. SAFE_APPEND lets SQLite write
    // the journal header's record count as "up to the file's end" and sync the journal
    // once per commit instead of twice.
    match with_storage(|s| Ok(s.safe_append())) {
        Ok(true) => SQLITE_IOCAP_SAFE_APPEND,
        _ => 0,
    }
}
