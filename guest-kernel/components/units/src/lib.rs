//! Test doubles for the tests in `tests/`: a disk in memory ([`MemDisk`]) and a shared
//! region in memory ([`Shm`]).

use flexos_vfs::cache::{SECTOR, Sectors};
use flexos_vfs::codes::E_IO;
use rpc_shm::{Region, SharedBuf, SharedBytes};

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

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// A one-compartment shared region of 256 KiB in memory, for the rings that live in a
/// channel's heap (net's byte rings, netdev's relay rings).
pub struct Shm {
    _pages: Vec<Page>,
    region: Region,
}

impl Shm {
    pub fn new() -> Shm {
        let mut pages: Vec<Page> = (0..64).map(|_| Page([0; 4096])).collect();
        let size = pages.len() * 4096;
        // SAFETY: `pages` lives as long as the region (same struct, dropped after) and
        // is only accessed through it.
        let region = unsafe { Region::init(pages.as_mut_ptr() as *mut u8, size, 1) }.unwrap();
        Shm {
            _pages: pages,
            region,
        }
    }

    /// `len` bytes at the start of the compartment's own channel heap.
    pub fn buf(&self, len: usize) -> SharedBytes<'_> {
        let heap = self.region.layout().channel_heap(0, 0);
        let len = u32::try_from(len).expect("a test buffer fits the heap");
        self.region
            .bytes(SharedBuf::from_parts(heap.offset(), len))
            .unwrap()
    }
}

impl Default for Shm {
    fn default() -> Self {
        Shm::new()
    }
}
