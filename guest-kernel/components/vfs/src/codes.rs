//! Error codes of the `fs` interface (negative return values), errno-like.

/// No such file.
pub const E_NOT_FOUND: i64 = -2;
/// The disk or the device failed.
pub const E_IO: i64 = -5;
/// Not an open file id.
pub const E_BAD_FILE: i64 = -9;
/// The shared buffer handle was refused.
pub const E_BAD_BUFFER: i64 = -14;
/// The file system is in use by a call that has not returned.
pub const E_BUSY: i64 = -16;
/// No block device.
pub const E_NO_DISK: i64 = -19;
/// A bad argument: an invalid name, a negative or overflowing offset or length.
pub const E_INVALID: i64 = -22;
/// Too many open files.
pub const E_TOO_MANY: i64 = -24;
/// The file system is full (the disk, or the RAM file system's cap or heap).
pub const E_NO_SPACE: i64 = -28;
/// The disk is read-only.
pub const E_READ_ONLY: i64 = -30;
/// The disk holds no FAT file system (or a corrupt one).
pub const E_NOT_FAT: i64 = -79;

/// What a code means, for messages.
pub fn describe(code: i64) -> &'static str {
    match code {
        E_NOT_FOUND => "no such file",
        E_IO => "I/O error",
        E_BAD_FILE => "bad file id",
        E_BAD_BUFFER => "bad shared buffer",
        E_BUSY => "file system busy",
        E_NO_DISK => "no block device",
        E_INVALID => "invalid argument",
        E_TOO_MANY => "too many open files",
        E_NO_SPACE => "no space left on the file system",
        E_READ_ONLY => "read-only disk",
        E_NOT_FAT => "the disk holds no FAT file system",
        _ => "unknown error",
    }
}
