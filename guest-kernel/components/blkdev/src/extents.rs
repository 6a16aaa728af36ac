//! The extent list of a batched write (`blk::write_extents`): which byte ranges of the
//! data buffer go to which sectors. Plain Rust, no kernel, so it is tested on the host.
//!
//! Each extent is [`EXTENT_BYTES`] little-endian bytes: the first sector (u64), the
//! offset of its data in the data buffer (u32) and its length in bytes (u32, a non-zero
//! multiple of 512). The caller writes the list into one shared buffer and the data into
//! another; the driver makes one virtio-blk request per extent and posts them together.

use crate::request::{E_LENGTH, E_RANGE, SECTOR_SIZE, check_transfer};

/// Bytes of one encoded extent.
pub const EXTENT_BYTES: usize = 16;

/// One run of sectors written from one contiguous range of the data buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub sector: u64,
    /// Offset of the run's first byte in the data buffer.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Extent {
    pub fn encode(&self) -> [u8; EXTENT_BYTES] {
        let mut raw = [0u8; EXTENT_BYTES];
        raw[0..8].copy_from_slice(&self.sector.to_le_bytes());
        raw[8..12].copy_from_slice(&self.offset.to_le_bytes());
        raw[12..16].copy_from_slice(&self.len.to_le_bytes());
        raw
    }

    pub fn decode(raw: &[u8; EXTENT_BYTES]) -> Extent {
        let word = |r: core::ops::Range<usize>| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&raw[r]);
            u32::from_le_bytes(b)
        };
        let mut sector = [0u8; 8];
        sector.copy_from_slice(&raw[0..8]);
        Extent {
            sector: u64::from_le_bytes(sector),
            offset: word(8..12),
            len: word(12..16),
        }
    }

    /// Checks the extent against a disk of `capacity` sectors and a data buffer of
    /// `data_len` bytes; returns the error code of the first problem.
    pub fn check(&self, capacity: u64, data_len: usize) -> Result<(), i64> {
        check_transfer(capacity, self.sector, self.len as usize)?;
        match (self.offset as usize).checked_add(self.len as usize) {
            Some(end) if end <= data_len => Ok(()),
            _ => Err(E_RANGE),
        }
    }
}

/// Appends `len` bytes for `sector`, at `offset` of the data buffer, to `list`, merging
/// it into the last extent when it continues that one on the disk and in the buffer
/// (adjacent cache blocks become one request). `len` must be a multiple of 512.
pub fn push(
    list: &mut alloc::vec::Vec<Extent>,
    sector: u64,
    offset: u32,
    len: u32,
) -> Result<(), i64> {
    if len == 0 || !(len as usize).is_multiple_of(SECTOR_SIZE) {
        return Err(E_LENGTH);
    }
    if let Some(last) = list.last_mut() {
        let next_sector = last.sector + u64::from(last.len) / SECTOR_SIZE as u64;
        if next_sector == sector && last.offset + last.len == offset {
            last.len = last.len.checked_add(len).ok_or(E_RANGE)?;
            return Ok(());
        }
    }
    list.push(Extent {
        sector,
        offset,
        len,
    });
    Ok(())
}
