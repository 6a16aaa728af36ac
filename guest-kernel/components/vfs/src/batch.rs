//! The write list of `fs::write_batch`: several writes (to any open files) carried by
//! one gate call, their data packed one after another in one data buffer. Plain Rust,
//! tested on the host.
//!
//! Each entry is [`ENTRY_BYTES`] little-endian bytes: the file id (u32), the length
//! (u32) and the file offset (u64). Entry `i`'s data follows entry `i - 1`'s in the data
//! buffer, starting at 0.

use alloc::vec::Vec;

use crate::codes::E_INVALID;

/// Bytes of one encoded entry.
pub const ENTRY_BYTES: usize = 16;

/// One write of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub file: u32,
    pub len: u32,
    pub offset: u64,
}

impl Entry {
    pub fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut raw = [0u8; ENTRY_BYTES];
        raw[0..4].copy_from_slice(&self.file.to_le_bytes());
        raw[4..8].copy_from_slice(&self.len.to_le_bytes());
        raw[8..16].copy_from_slice(&self.offset.to_le_bytes());
        raw
    }

    pub fn decode(raw: &[u8; ENTRY_BYTES]) -> Entry {
        let mut file = [0u8; 4];
        let mut len = [0u8; 4];
        let mut offset = [0u8; 8];
        file.copy_from_slice(&raw[0..4]);
        len.copy_from_slice(&raw[4..8]);
        offset.copy_from_slice(&raw[8..16]);
        Entry {
            file: u32::from_le_bytes(file),
            len: u32::from_le_bytes(len),
            offset: u64::from_le_bytes(offset),
        }
    }
}

/// Checks a list for a data buffer of `data_len` bytes without decoding it into a
/// vector: whole entries, no offset past what a signed offset holds, the data of all
/// entries inside the buffer. Returns the bytes of data the entries take. (Whether a
/// write fits in its file is the file system's check, as for `write_at`.)
pub fn check(raw: &[u8], data_len: usize) -> Result<usize, i64> {
    if !raw.len().is_multiple_of(ENTRY_BYTES) {
        return Err(E_INVALID);
    }
    let mut total = 0usize;
    for entry in entries(raw) {
        // A signed offset, as every other `fs` call takes (so the end cannot wrap).
        if i64::try_from(entry.offset).is_err() {
            return Err(E_INVALID);
        }
        total = total.checked_add(entry.len as usize).ok_or(E_INVALID)?;
    }
    if total > data_len {
        return Err(E_INVALID);
    }
    Ok(total)
}

/// The entries of `raw` in order (a trailing partial entry is left out; [`check`]
/// refuses such a list).
pub fn entries(raw: &[u8]) -> impl Iterator<Item = Entry> + '_ {
    raw.chunks_exact(ENTRY_BYTES)
        .map(|chunk| Entry::decode(chunk.try_into().expect("ENTRY_BYTES")))
}

/// Decodes and checks a list for a data buffer of `data_len` bytes, as [`check`] does.
pub fn parse(raw: &[u8], data_len: usize) -> Result<Vec<Entry>, i64> {
    check(raw, data_len)?;
    Ok(entries(raw).collect())
}

/// Adds a write of `len` bytes at `offset` of `file` to `entries` (its data placed right
/// after the data of the entries before it), merging it into the last entry when it
/// continues that one in the same file.
pub fn push(entries: &mut Vec<Entry>, file: u32, offset: u64, len: u32) {
    if let Some(last) = entries.last_mut()
        && last.file == file
        && last.offset.checked_add(u64::from(last.len)) == Some(offset)
        && let Some(merged) = last.len.checked_add(len)
    {
        last.len = merged;
        return;
    }
    entries.push(Entry { file, len, offset });
}
