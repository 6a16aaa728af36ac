//! The file behind a virtio-blk device, with positioned I/O straight between the file
//! and guest memory.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use virtio_bindings::bindings::virtio_blk::VIRTIO_BLK_ID_BYTES;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{
    Bytes, GuestAddress, ReadVolatile, VolatileMemoryError, VolatileSlice, WriteVolatile,
};

use crate::virtio::GuestMemory;

/// Bytes per virtio-blk sector.
pub const SECTOR_SIZE: u64 = 512;

/// Why a disk file cannot back a device.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Cannot open (NotFound, PermissionDenied, ...): the monitor exits 66.
    #[error("cannot open disk {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("disk {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    /// Unusable size: the monitor exits 64.
    #[error("disk {} is {size} bytes, not a non-zero multiple of 512", path.display())]
    Size { path: PathBuf, size: u64 },
}

/// An open disk file of a whole number of sectors.
#[derive(Debug)]
pub struct Disk {
    file: File,
    size: u64,
    readonly: bool,
    volatile: bool,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
}

/// `statfs` magic numbers of file systems that keep every byte in memory only.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Whether `file` lives on a memory-only file system (tmpfs, ramfs), where a written
/// byte is as durable as it will ever be and fdatasync does nothing.
fn memory_only(file: &File) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the fd is open; fstatfs writes one `struct statfs` into the buffer.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        // Unknown: assume the file system needs flushes.
        return false;
    }
    // SAFETY: fstatfs succeeded, so it filled the struct (zeroed before anyway).
    let st = unsafe { st.assume_init() };
    // f_type is i64 with glibc on x86_64 but another width elsewhere.
    #[allow(clippy::unnecessary_cast)]
    let kind = st.f_type as i64;
    kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
}

impl Disk {
    /// Opens `path` for reading, and for writing unless `readonly`.
    pub fn open(path: &Path, readonly: bool) -> Result<Disk, DiskError> {
        let open_error = |source| DiskError::Open {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(open_error)?;
        let meta = file.metadata().map_err(open_error)?;
        if !meta.is_file() {
            return Err(DiskError::NotAFile {
                path: path.to_owned(),
            });
        }
        let size = meta.len();
        if size == 0 || size % SECTOR_SIZE != 0 {
            return Err(DiskError::Size {
                path: path.to_owned(),
                size,
            });
        }
        // The serial number: stable for one file, distinct between files on a host.
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let serial = format!("{:x}{:x}", meta.dev(), meta.ino());
        let n = serial.len().min(id.len());
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Ok(Disk {
            volatile: memory_only(&file),
            file,
            size,
            readonly,
            id,
        })
    }

    /// Size in bytes (a multiple of [`SECTOR_SIZE`]).
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Whether the file is on tmpfs or ramfs: a completed write is then already as
    /// durable as the medium allows, so the device is write-through and offers no
    /// FLUSH (which would be an fdatasync that does nothing, at the cost of a request
    /// round trip per sync).
    pub fn memory_only(&self) -> bool {
        self.volatile
    }

    /// The GET_ID answer (zero-padded, not NUL-terminated when 20 bytes long).
    pub fn id(&self) -> &[u8; VIRTIO_BLK_ID_BYTES as usize] {
        &self.id
    }

    /// Reads `len` bytes at `offset` of the file into guest memory at `addr`.
    pub fn read_to_guest(
        &self,
        mem: &GuestMemory,
        addr: GuestAddress,
        len: u32,
        offset: u64,
    ) -> Result<(), vm_memory::GuestMemoryError> {
        let mut src = FileAt {
            file: &self.file,
            offset,
        };
        mem.read_exact_volatile_from(addr, &mut src, len as usize)
    }

    /// Writes `len` bytes of guest memory at `addr` to the file at `offset`.
    pub fn write_from_guest(
        &self,
        mem: &GuestMemory,
        addr: GuestAddress,
        len: u32,
        offset: u64,
    ) -> Result<(), vm_memory::GuestMemoryError> {
        let mut dst = FileAt {
            file: &self.file,
            offset,
        };
        mem.write_all_volatile_to(addr, &mut dst, len as usize)
    }

    /// fdatasync: the data written so far survives a host crash.
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// The file seen from one offset on, advancing like a cursor, without moving the file
/// position (so reads and writes need no lock and no seek).
///
/// pread/pwrite go through the raw pointer of the volatile slice rather than
/// `FileExt::read_at`/`write_at`: those take `&[u8]`, and a Rust slice over memory the
/// guest may change at any moment would break the aliasing rules.
struct FileAt<'a> {
    file: &'a File,
    offset: u64,
}

impl FileAt<'_> {
    fn offset(&self) -> Result<libc::off_t, VolatileMemoryError> {
        libc::off_t::try_from(self.offset)
            .map_err(|_| VolatileMemoryError::IOError(io::ErrorKind::InvalidInput.into()))
    }

    /// Turns a pread/pwrite result into bytes done (reading errno right away) and
    /// moves the cursor.
    fn advance(&mut self, result: isize) -> Result<usize, VolatileMemoryError> {
        let n = usize::try_from(result)
            .map_err(|_| VolatileMemoryError::IOError(io::Error::last_os_error()))?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl ReadVolatile for FileAt<'_> {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let offset = self.offset()?;
        let guard = buf.ptr_guard_mut();
        // SAFETY: the fd is open for the lifetime of `self.file`; the pointer and length
        // come from a VolatileSlice, which guarantees the range is mapped and writable
        // for as long as the guard lives; the kernel writes at most `buf.len()` bytes.
        let n = unsafe {
            libc::pread(
                self.file.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                offset,
            )
        };
        let done = self.advance(n);
        // Whatever part was written is guest-visible now.
        buf.bitmap().mark_dirty(0, buf.len());
        done
    }
}

impl WriteVolatile for FileAt<'_> {
    fn write_volatile<B: BitmapSlice>(
        &mut self,
        buf: &VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let offset = self.offset()?;
        let guard = buf.ptr_guard();
        // SAFETY: the fd is open for the lifetime of `self.file`; the pointer and length
        // come from a VolatileSlice, which guarantees the range is mapped and readable
        // for as long as the guard lives; the kernel only reads from it.
        let n = unsafe {
            libc::pwrite(
                self.file.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                offset,
            )
        };
        self.advance(n)
    }
}
