//! A write-back cache of 4 KiB blocks over a disk of 512-byte sectors, giving the file
//! system the byte-level access it needs. Writes stay in the cache until [`Cache::sync`]
//! (or until the cache is full), so a file system operation that touches the same FAT
//! sector many times costs one device write, and nothing reaches the device unless
//! asked: the file layer syncs at commit points.
//!
//! # Write-back order
//!
//! The file layer calls [`Cache::barrier`] before it writes a directory entry (a file's
//! size). A write-back then goes in groups: every block last written before the first
//! barrier, a device flush, the blocks written between the first and the second, a
//! flush, and so on (sector order inside a group, one device batch per group). So a
//! size never reaches the disk before the data it covers, whether the monitor is
//! killed in the middle (the device carries out a batch in order, and the next group
//! is posted only once the previous one completed) or the host crashes (the flush in
//! between): what SQLite calls SAFE_APPEND. A write-back with one group, the common
//! case (the size did not change), costs one batch.

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
    /// When it was last written (the cache's write counter).
    written: u64,
}

/// The cache: at most `max_blocks` blocks, indexed by block number.
pub struct Cache<D> {
    dev: D,
    blocks: BTreeMap<u64, Block>,
    max_blocks: usize,
    capacity_bytes: u64,
    /// Counts writes; each block remembers the count of its last one.
    writes: u64,
    /// Write counts of the barriers since the last write-back, ascending.
    barriers: Vec<u64>,
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
            writes: 0,
            barriers: Vec::new(),
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
            self.blocks.insert(
                index,
                Block {
                    data,
                    dirty: false,
                    written: 0,
                },
            );
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
        self.writes += 1;
        let written = self.writes;
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
            block.written = written;
            at += n as u64;
        }
        Ok((end - pos) as usize)
    }

    /// Orders the write-back: what is written from now on reaches the device only after
    /// everything written before, with a flush in between (see the module docs). Call
    /// it before writing a file's size.
    pub fn barrier(&mut self) {
        self.writes += 1;
        if self.barriers.last() != Some(&self.writes) {
            self.barriers.push(self.writes);
        }
    }

    /// Writes every dirty block to the device, one batch per barrier group with a flush
    /// between groups, then flushes the device if `flush`.
    fn write_back_and(&mut self, flush: bool) -> Result<(), i64> {
        // Group g holds the blocks last written before barrier g (the last group: after
        // every barrier).
        let group_of = |written: u64, barriers: &[u64]| barriers.partition_point(|&b| b <= written);
        let mut groups: Vec<Vec<(u64, &[u8])>> = vec![Vec::new(); self.barriers.len() + 1];
        for (&index, block) in self.blocks.iter().filter(|(_, b)| b.dirty) {
            groups[group_of(block.written, &self.barriers)]
                .push((index * SECTORS_PER_BLOCK, block.data.as_slice()));
        }
        groups.retain(|g| !g.is_empty());
        if groups.is_empty() {
            return if flush { self.dev.flush() } else { Ok(()) };
        }
        let last = groups.len() - 1;
        for (i, group) in groups.iter().enumerate() {
            self.dev.write_batch(group, i < last || flush)?;
        }
        for block in self.blocks.values_mut() {
            block.dirty = false;
        }
        self.barriers.clear();
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
