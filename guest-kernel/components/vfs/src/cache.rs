//! A write-back cache of 4 KiB blocks over a disk of 512-byte sectors, giving the file
//! system the byte-level access it needs. Writes stay in the cache until [`Cache::sync`]
//! (or until the cache is full), so a file system operation that touches the same FAT
//! sector many times costs one device write, and nothing reaches the device unless
//! asked: the file layer syncs at commit points.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::codes::E_NO_SPACE;

/// Bytes per sector of the device.
pub const SECTOR: usize = 512;
/// Bytes per cache block (FAT16 here uses 4 KiB clusters).
pub const BLOCK: usize = 4096;
const SECTORS_PER_BLOCK: u64 = (BLOCK / SECTOR) as u64;

/// The device under the cache. Errors are the interface's negative codes.
pub trait Sectors {
    /// Disk size in sectors.
    fn capacity(&self) -> u64;
    /// Reads `buf.len()` bytes (whole sectors) at `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), i64>;
    /// Writes `buf` (whole sectors) at `sector`.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), i64>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), i64>;
    /// Writes `blocks` (each `(sector, whole sectors)`, in ascending sector order), then
    /// flushes if `flush`. A device that can post many writes at once overrides this:
    /// a sync is then one round of requests instead of one per block.
    fn write_batch(&mut self, blocks: &[(u64, &[u8])], flush: bool) -> Result<(), i64> {
        for &(sector, data) in blocks {
            self.write(sector, data)?;
        }
        if flush { self.flush() } else { Ok(()) }
    }
}

struct Block {
    data: Vec<u8>,
    dirty: bool,
}

/// The cache: at most `max_blocks` blocks, indexed by block number.
pub struct Cache<D> {
    dev: D,
    blocks: BTreeMap<u64, Block>,
    max_blocks: usize,
    capacity_bytes: u64,
}

impl<D: Sectors> Cache<D> {
    /// A cache of at most `max_blocks` (>= 1) blocks over `dev`.
    pub fn new(dev: D, max_blocks: usize) -> Self {
        let capacity_bytes = dev.capacity().saturating_mul(SECTOR as u64);
        Cache {
            dev,
            blocks: BTreeMap::new(),
            max_blocks: max_blocks.max(1),
            capacity_bytes,
        }
    }

    /// The disk's size in bytes.
    pub fn len(&self) -> u64 {
        self.capacity_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.capacity_bytes == 0
    }

    /// The device (for tests and statistics).
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// How many cached blocks hold data the device has not seen.
    pub fn dirty_blocks(&self) -> usize {
        self.blocks.values().filter(|b| b.dirty).count()
    }

    /// Bytes of block `index` that lie on the disk (the last block may be short).
    fn block_len(&self, index: u64) -> usize {
        let start = index * BLOCK as u64;
        (self.capacity_bytes - start).min(BLOCK as u64) as usize
    }

    /// Makes room for one more block: writes everything back and empties the cache.
    fn make_room(&mut self) -> Result<(), i64> {
        if self.blocks.len() >= self.max_blocks {
            self.write_back()?;
            self.blocks.clear();
        }
        Ok(())
    }

    /// Block `index`, read from the device unless cached (or unless `whole`: the caller
    /// overwrites all of it, so its old contents do not matter).
    fn block(&mut self, index: u64, whole: bool) -> Result<&mut Block, i64> {
        if !self.blocks.contains_key(&index) {
            self.make_room()?;
            let mut data = vec![0; self.block_len(index)];
            if !whole {
                self.dev.read(index * SECTORS_PER_BLOCK, &mut data)?;
            }
            self.blocks.insert(index, Block { data, dirty: false });
        }
        Ok(self.blocks.get_mut(&index).expect("inserted above"))
    }

    /// Copies bytes at `pos` into `buf`; returns how many (fewer at the end of the disk).
    pub fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<usize, i64> {
        let end = pos
            .saturating_add(buf.len() as u64)
            .min(self.capacity_bytes);
        let mut at = pos;
        while at < end {
            let index = at / BLOCK as u64;
            let off = (at % BLOCK as u64) as usize;
            let block = self.block(index, false)?;
            let n = (block.data.len() - off).min((end - at) as usize);
            let done = (at - pos) as usize;
            buf[done..done + n].copy_from_slice(&block.data[off..off + n]);
            at += n as u64;
        }
        Ok((end.saturating_sub(pos)) as usize)
    }

    /// Copies `buf` to `pos` in the cache; returns how many bytes (fewer at the end of
    /// the disk; an error if none fit).
    pub fn write_at(&mut self, pos: u64, buf: &[u8]) -> Result<usize, i64> {
        let end = pos
            .saturating_add(buf.len() as u64)
            .min(self.capacity_bytes);
        if end <= pos && !buf.is_empty() {
            return Err(E_NO_SPACE);
        }
        let mut at = pos;
        while at < end {
            let index = at / BLOCK as u64;
            let off = (at % BLOCK as u64) as usize;
            let len = self.block_len(index);
            let n = (len - off).min((end - at) as usize);
            let block = self.block(index, off == 0 && n == len)?;
            let done = (at - pos) as usize;
            block.data[off..off + n].copy_from_slice(&buf[done..done + n]);
            block.dirty = true;
            at += n as u64;
        }
        Ok((end - pos) as usize)
    }

    /// Writes every dirty block to the device in one batch, then flushes it if `flush`.
    fn write_back_and(&mut self, flush: bool) -> Result<(), i64> {
        let dirty: Vec<(u64, &[u8])> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.dirty)
            .map(|(&index, b)| (index * SECTORS_PER_BLOCK, b.data.as_slice()))
            .collect();
        if dirty.is_empty() {
            return if flush { self.dev.flush() } else { Ok(()) };
        }
        self.dev.write_batch(&dirty, flush)?;
        for block in self.blocks.values_mut() {
            block.dirty = false;
        }
        Ok(())
    }

    /// Writes every dirty block to the device (without a device flush).
    fn write_back(&mut self) -> Result<(), i64> {
        self.write_back_and(false)
    }

    /// Writes every dirty block back and flushes the device: when this returns `Ok`,
    /// everything written so far is durable.
    pub fn sync(&mut self) -> Result<(), i64> {
        self.write_back_and(true)
    }
}
