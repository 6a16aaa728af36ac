//! A disk in memory for the tests in `tests/`.

use flexos_vfs::cache::{SECTOR, Sectors};
use flexos_vfs::codes::E_IO;

/// A disk in memory that counts what reaches it, and can be made to fail.
pub struct MemDisk {
    pub bytes: Vec<u8>,
    pub reads: usize,
    pub writes: usize,
    pub flushes: usize,
    /// Every `write_batch` call: the sectors of its blocks and whether it flushed.
    pub batches: Vec<(Vec<u64>, bool)>,
    pub fail: bool,
}

impl MemDisk {
    /// A zeroed disk of `sectors` sectors.
    pub fn new(sectors: usize) -> Self {
        MemDisk {
            bytes: vec![0; sectors * SECTOR],
            reads: 0,
            writes: 0,
            flushes: 0,
            batches: Vec::new(),
            fail: false,
        }
    }
}

impl Sectors for MemDisk {
    fn capacity(&self) -> u64 {
        (self.bytes.len() / SECTOR) as u64
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), i64> {
        assert_eq!(buf.len() % SECTOR, 0, "partial sector read");
        if self.fail {
            return Err(E_IO);
        }
        self.reads += 1;
        let at = sector as usize * SECTOR;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), i64> {
        assert_eq!(buf.len() % SECTOR, 0, "partial sector write");
        if self.fail {
            return Err(E_IO);
        }
        self.writes += 1;
        let at = sector as usize * SECTOR;
        self.bytes[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), i64> {
        if self.fail {
            return Err(E_IO);
        }
        self.flushes += 1;
        Ok(())
    }
    fn write_batch(&mut self, blocks: &[(u64, &[u8])], flush: bool) -> Result<(), i64> {
        self.batches
            .push((blocks.iter().map(|&(s, _)| s).collect(), flush));
        for &(sector, data) in blocks {
            self.write(sector, data)?;
        }
        if flush {
            self.flush()?;
        }
        Ok(())
    }
}
