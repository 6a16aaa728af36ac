//! Checks on a block request and the error codes of the `blk` interface: plain Rust,
//! no kernel, so they are tested on the host.

/// Bytes per sector (virtio-blk's unit, whatever the disk's own).
pub const SECTOR_SIZE: usize = 512;

/// No virtio-blk device is attached to this compartment (or it failed to start).
pub const E_NO_DEVICE: i64 = -19;
/// The device reported an I/O error, or a request could not be posted.
pub const E_IO: i64 = -5;
/// The buffer is empty or its length is not a multiple of [`SECTOR_SIZE`].
pub const E_LENGTH: i64 = -22;
/// The request reaches past the end of the disk.
pub const E_RANGE: i64 = -34;
/// The disk is read-only (the device offers VIRTIO_BLK_F_RO).
pub const E_READ_ONLY: i64 = -30;
/// The shared buffer handle was refused.
pub const E_BAD_BUFFER: i64 = -14;
/// No memory for the DMA bounce buffer.
pub const E_NO_MEMORY: i64 = -12;
/// The driver is in use by a call that has not returned (a re-entrant call).
pub const E_BUSY: i64 = -16;

/// What an error code means, for messages.
pub fn describe(code: i64) -> &'static str {
    match code {
        E_NO_DEVICE => "no block device",
        E_IO => "I/O error",
        E_LENGTH => "length is not a non-zero multiple of 512",
        E_RANGE => "beyond the end of the disk",
        E_READ_ONLY => "read-only disk",
        E_BAD_BUFFER => "bad shared buffer",
        E_NO_MEMORY => "out of memory",
        E_BUSY => "driver busy",
        _ => "unknown error",
    }
}

/// Checks a transfer of `len` bytes at `sector` on a disk of `capacity` sectors and
/// returns how many sectors it covers, or the error code.
pub fn check_transfer(capacity: u64, sector: u64, len: usize) -> Result<u64, i64> {
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
        return Err(E_LENGTH);
    }
    let count = (len / SECTOR_SIZE) as u64;
    match sector.checked_add(count) {
        Some(end) if end <= capacity => Ok(count),
        _ => Err(E_RANGE),
    }
}
