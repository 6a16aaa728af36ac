//! The `sqlite3_vfs` "flexos": SQLite's OS layer over a [`Storage`].
//!
//! SQLite is built with SQLITE_OS_OTHER, so it has no VFS of its own: `sqlite3_os_init`
//! (in `main.rs`) calls [`register`], which makes this one the default. Every callback
//! reaches the storage that [`install`] put in place through one lock; the callbacks are
//! never re-entered (the storage does not call SQLite), and if one were, it would get
//! an I/O error instead of a deadlock.
//!
//! What the VFS does not need to do, because the app always runs
//! `PRAGMA locking_mode=EXCLUSIVE` and SQLite runs single-threaded in one compartment:
//! real locking (a lock is a level remembered per file) and the shared-memory methods
//! (WAL keeps its index in heap memory in exclusive mode). There are no dynamic
//! extensions (SQLITE_OMIT_LOAD_EXTENSION), so the xDl* methods are absent.
//!
//! No float crosses between Rust and C here: time goes through xCurrentTimeInt64
//! (iVersion 2), and xCurrentTime, which takes a `double`, is left out.

mod file;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::ffi::{CStr, c_char, c_int};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use flexos_kernel::sync::SpinLock;
use flexos_kernel::time;
use libsqlite3_sys::{
    SQLITE_CANTOPEN, SQLITE_FULL, SQLITE_IOERR, SQLITE_IOERR_DELETE, SQLITE_IOERR_DELETE_NOENT,
    SQLITE_OK, SQLITE_OPEN_CREATE, SQLITE_OPEN_DELETEONCLOSE, SQLITE_OPEN_EXCLUSIVE,
    SQLITE_OPEN_READONLY, sqlite3_file, sqlite3_int64, sqlite3_vfs, sqlite3_vfs_register,
    sqlite3_vfs_unregister,
};

use crate::storage::{OpenMode, Storage, StorageError};
use file::{IO_METHODS, OpenFile};

/// The VFS's name, as `sqlite3_vfs_find` knows it.
pub const VFS_NAME: &CStr = c"flexos";

/// Longest path SQLite may hand us (FAT long names are at most 255 characters; the
/// journal suffixes fit in the rest).
const MAX_PATHNAME: c_int = 512;

/// Julian day of the Unix epoch, in milliseconds (xCurrentTimeInt64's unit).
const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;

/// The storage behind every file, set by [`install`].
static STORAGE: SpinLock<Option<Box<dyn Storage + Send>>> = SpinLock::new(None);

/// The registered VFS (leaked: SQLite keeps a pointer and links it into its list).
static REGISTERED: AtomicPtr<sqlite3_vfs> = AtomicPtr::new(core::ptr::null_mut());

/// Numbers the files SQLite opens without a name.
static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// xorshift64 state for xRandomness (seeded from the TSC on first use).
static RANDOM_STATE: AtomicU64 = AtomicU64::new(0);

/// Puts `storage` under the VFS (replacing any earlier one). Call before
/// `sqlite3_initialize`.
pub fn install(storage: Box<dyn Storage + Send>) {
    *STORAGE.lock() = Some(storage);
}

/// Registers the VFS as SQLite's default; returns an SQLite result code. Called from
/// `sqlite3_os_init`, i.e. inside `sqlite3_initialize`.
pub fn register() -> c_int {
    let mut vfs = REGISTERED.load(Ordering::Acquire);
    if vfs.is_null() {
        vfs = Box::into_raw(Box::new(new_vfs()));
        REGISTERED.store(vfs, Ordering::Release);
    }
    // SAFETY: `vfs` points to a leaked, fully initialised sqlite3_vfs that lives for
    // the rest of the run; SQLite only links it into its list.
    unsafe { sqlite3_vfs_register(vfs, 1) }
}

/// Unregisters the VFS (from `sqlite3_os_end`).
pub fn unregister() -> c_int {
    let vfs = REGISTERED.load(Ordering::Acquire);
    if vfs.is_null() {
        return SQLITE_OK;
    }
    // SAFETY: `vfs` is the pointer registered above, still alive (it is never freed).
    unsafe { sqlite3_vfs_unregister(vfs) }
}

fn new_vfs() -> sqlite3_vfs {
    sqlite3_vfs {
        iVersion: 2,
        szOsFile: core::mem::size_of::<OpenFile>() as c_int,
        mxPathname: MAX_PATHNAME,
        pNext: core::ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: core::ptr::null_mut(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: None,
        xDlError: None,
        xDlSym: None,
        xDlClose: None,
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: None,
        xGetLastError: None,
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    }
}

/// Runs `op` on the installed storage; an I/O error if there is none or the lock is
/// already held (re-entrance).
fn with_storage<T>(
    op: impl FnOnce(&mut dyn Storage) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let mut guard = STORAGE.try_lock().ok_or(StorageError::Io)?;
    let storage = guard.as_deref_mut().ok_or(StorageError::Io)?;
    op(storage)
}

/// The SQLite code for a failed I/O call: a full medium is SQLITE_FULL, anything else
/// the call's own extended I/O error.
fn io_code(err: StorageError, ioerr: c_int) -> c_int {
    match err {
        StorageError::NoSpace => SQLITE_FULL,
        _ => ioerr,
    }
}

/// The file name SQLite passed, if it is UTF-8.
///
/// # Safety
///
/// `name` is null or a NUL-terminated string that outlives the call.
unsafe fn name_of<'a>(name: *const c_char) -> Option<&'a str> {
    if name.is_null() {
        return None;
    }
    // SAFETY: per the caller, a valid NUL-terminated string.
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}

unsafe extern "C" fn x_open(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    file: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a buffer of szOsFile bytes; until this succeeds only the
    // base's method pointer matters to it, and null means "not open, do not close".
    unsafe { (*file).pMethods = core::ptr::null() };
    let temp_name;
    let (name, delete_on_close) = if name.is_null() {
        // A temporary file (SQLITE_TEMP_STORE=3 keeps them in memory, so this is rare).
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        temp_name = format!("etilqs_{n}");
        (temp_name.as_str(), true)
    } else {
        // SAFETY: a non-null name from SQLite is NUL-terminated and outlives the file.
        let Some(name) = (unsafe { name_of(name) }) else {
            return SQLITE_CANTOPEN;
        };
        (name, flags & SQLITE_OPEN_DELETEONCLOSE != 0)
    };
    let mode = if flags & SQLITE_OPEN_CREATE == 0 {
        OpenMode::Existing
    } else if flags & SQLITE_OPEN_EXCLUSIVE != 0 {
        OpenMode::CreateNew
    } else {
        OpenMode::OrCreate
    };
    let id = match with_storage(|s| s.open(name, mode)) {
        Ok(id) => id,
        Err(StorageError::NoSpace) => return SQLITE_FULL,
        Err(_) => return SQLITE_CANTOPEN,
    };
    let state = OpenFile {
        base: sqlite3_file {
            pMethods: &IO_METHODS,
        },
        id,
        lock: 0,
        readonly: flags & SQLITE_OPEN_READONLY != 0,
        delete_on_close: delete_on_close.then(|| String::from(name)),
    };
    // SAFETY: the buffer is szOsFile = size_of::<OpenFile>() bytes, aligned to 8 by
    // SQLite's allocator (OpenFile needs 8), and holds nothing to drop yet.
    unsafe { file.cast::<OpenFile>().write(state) };
    if !out_flags.is_null() {
        // SAFETY: SQLite passes a valid int pointer or null.
        unsafe { *out_flags = flags };
    }
    SQLITE_OK
}

unsafe extern "C" fn x_delete(_vfs: *mut sqlite3_vfs, name: *const c_char, _sync: c_int) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated name.
    let Some(name) = (unsafe { name_of(name) }) else {
        return SQLITE_IOERR_DELETE;
    };
    // The storage's delete is durable on return: for journal_mode=DELETE this is the
    // commit point, even though SQLite asks for no directory sync.
    match with_storage(|s| s.delete(name)) {
        Ok(()) => SQLITE_OK,
        Err(StorageError::NotFound) => SQLITE_IOERR_DELETE_NOENT,
        Err(err) => io_code(err, SQLITE_IOERR_DELETE),
    }
}

unsafe extern "C" fn x_access(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    _flags: c_int,
    res_out: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated name.
    let exists = match unsafe { name_of(name) } {
        Some(name) => match with_storage(|s| s.exists(name)) {
            Ok(exists) => exists,
            Err(_) => return SQLITE_IOERR,
        },
        None => false,
    };
    // Every file is readable and writable, so all three questions (EXISTS, READ,
    // READWRITE) have the same answer.
    // SAFETY: SQLite passes a valid int pointer.
    unsafe { *res_out = c_int::from(exists) };
    SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // Names are flat (one directory), so a name is its own full path.
    // SAFETY: SQLite passes a NUL-terminated name.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes_with_nul();
    if n_out < 0 || bytes.len() > n_out as usize {
        return SQLITE_CANTOPEN;
    }
    // SAFETY: `out` has room for `n_out` >= bytes.len() bytes; the ranges cannot
    // overlap (SQLite's output buffer is its own allocation).
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>(), bytes.len()) };
    SQLITE_OK
}

unsafe extern "C" fn x_randomness(_vfs: *mut sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let len = usize::try_from(n).unwrap_or(0);
    // SAFETY: SQLite passes a buffer of `n` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(out.cast::<u8>(), len) };
    let mut x = RANDOM_STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = time::rdtsc() | 1;
    }
    for byte in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = (x >> 56) as u8;
    }
    RANDOM_STATE.store(x, Ordering::Relaxed);
    n
}

unsafe extern "C" fn x_sleep(_vfs: *mut sqlite3_vfs, micros: c_int) -> c_int {
    // Nothing else runs in this compartment, so waiting is spinning.
    let until = time::now_ns().saturating_add(u64::try_from(micros).unwrap_or(0) * 1000);
    while time::now_ns() < until {
        core::hint::spin_loop();
    }
    micros
}

unsafe extern "C" fn x_current_time_int64(
    _vfs: *mut sqlite3_vfs,
    out: *mut sqlite3_int64,
) -> c_int {
    // The guest has no wall clock: "now" is the Unix epoch plus the time since boot.
    let ms = i64::try_from(time::now_ns() / 1_000_000).unwrap_or(i64::MAX);
    // SAFETY: SQLite passes a valid i64 pointer.
    unsafe { *out = UNIX_EPOCH_JULIAN_MS.saturating_add(ms) };
    SQLITE_OK
}
