//! [`MemStorage`]: files in this compartment's heap, gone when the run ends.
//!
//! It stands in for the file-system component until that exists, and measures SQLite's
//! own cost with no device underneath. Heap exhaustion is reported as
//! [`StorageError::NoSpace`] (SQLITE_FULL), not an allocation panic.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{FileId, OpenMode, Storage, StorageError};

/// Files by name; handles index `open` and name the file they were opened on.
#[derive(Default)]
pub struct MemStorage {
    files: BTreeMap<String, Vec<u8>>,
    open: Vec<Option<String>>,
}

impl MemStorage {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// The data of the file behind `file`. A handle whose file was deleted meanwhile
    /// finds nothing (SQLite closes a journal before it deletes it).
    fn data(&mut self, file: FileId) -> Result<&mut Vec<u8>, StorageError> {
        let name = self
            .open
            .get(file.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(StorageError::BadHandle)?;
        self.files.get_mut(name).ok_or(StorageError::NotFound)
    }
}

/// Grows `data` to `len` bytes with zeros, without panicking when the heap is full.
fn grow(data: &mut Vec<u8>, len: usize) -> Result<(), StorageError> {
    if len > data.len() {
        data.try_reserve(len - data.len())
            .map_err(|_| StorageError::NoSpace)?;
        data.resize(len, 0);
    }
    Ok(())
}

/// `offset + len` as an in-memory length.
fn end_of(offset: u64, len: usize) -> Result<usize, StorageError> {
    usize::try_from(offset)
        .ok()
        .and_then(|o| o.checked_add(len))
        .ok_or(StorageError::NoSpace)
}

impl Storage for MemStorage {
    fn open(&mut self, name: &str, mode: OpenMode) -> Result<FileId, StorageError> {
        if name.is_empty() {
            return Err(StorageError::BadName);
        }
        let exists = self.files.contains_key(name);
        match (mode, exists) {
            (OpenMode::Existing, false) => return Err(StorageError::NotFound),
            (OpenMode::CreateNew, true) => return Err(StorageError::AlreadyExists),
            (_, false) => {
                self.files.insert(name.to_string(), Vec::new());
            }
            (_, true) => {}
        }
        let slot = match self.open.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.open.push(None);
                self.open.len() - 1
            }
        };
        self.open[slot] = Some(name.to_string());
        let id = u32::try_from(slot).map_err(|_| StorageError::NoSpace)?;
        Ok(FileId(id))
    }

    fn close(&mut self, file: FileId) -> Result<(), StorageError> {
        let slot = self
            .open
            .get_mut(file.0 as usize)
            .ok_or(StorageError::BadHandle)?;
        slot.take().map(drop).ok_or(StorageError::BadHandle)
    }

    fn read_at(
        &mut self,
        file: FileId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StorageError> {
        let data = self.data(file)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_at(&mut self, file: FileId, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let end = end_of(offset, bytes.len())?;
        let data = self.data(file)?;
        grow(data, end)?;
        data[end - bytes.len()..end].copy_from_slice(bytes);
        Ok(())
    }

    fn size(&mut self, file: FileId) -> Result<u64, StorageError> {
        Ok(self.data(file)?.len() as u64)
    }

    fn truncate(&mut self, file: FileId, size: u64) -> Result<(), StorageError> {
        let len = end_of(size, 0)?;
        let data = self.data(file)?;
        if len <= data.len() {
            data.truncate(len);
            Ok(())
        } else {
            grow(data, len)
        }
    }

    fn sync(&mut self, file: FileId) -> Result<(), StorageError> {
        // Memory is as durable as it gets; only the handle is checked.
        self.data(file).map(drop)
    }

    fn delete(&mut self, name: &str) -> Result<(), StorageError> {
        self.files
            .remove(name)
            .map(drop)
            .ok_or(StorageError::NotFound)
    }

    fn exists(&mut self, name: &str) -> Result<bool, StorageError> {
        Ok(self.files.contains_key(name))
    }
}
