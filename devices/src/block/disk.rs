//! The file behind a virtio-blk device, with positioned I/O straight between the file
//! and guest memory.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
    /// Another process holds a lock that excludes ours: the monitor exits 75.
    #[error("disk {} is in use: {holder}", path.display())]
    Locked { path: PathBuf, holder: String },
}

/// An open disk file of a whole number of sectors.
#[derive(Debug)]
pub struct Disk {
    file: File,
    size: u64,
    readonly: bool,
    volatile: bool,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    /// (device, inode) of the file.
    file_id: (u64, u64),
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

enum LockError {
    /// Who holds the conflicting lock, in words.
    Held(String),
    Io(io::Error),
}

/// Takes an advisory whole-file lock on an open disk: exclusive for a writer, shared
/// for a reader, so two monitors never write one image (each would print `committed`
/// and the file system would be garbage afterwards), nor one write what another reads.
/// flock(2) locks belong to the open file: they go with the device's file and need
/// no unlocking, even after SIGKILL.
fn lock(file: &File, readonly: bool, meta: &std::fs::Metadata) -> Result<(), LockError> {
    let how = if readonly {
        libc::LOCK_SH
    } else {
        libc::LOCK_EX
    };
    // SAFETY: the fd is open for the call; flock changes no memory.
    if unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(LockError::Io(e));
    }
    let holders = std::fs::read_to_string("/proc/locks")
        .map(|t| lock_holders(&t, meta.dev(), meta.ino()))
        .unwrap_or_default();
    let what = if readonly {
        "a writer has it open"
    } else {
        "another process has it open"
    };
    Err(LockError::Held(if holders.is_empty() {
        format!("{what} (its lock is not in /proc/locks)")
    } else {
        let named: Vec<String> = holders
            .iter()
            .map(|(pid, kind)| format!("{} (pid {pid}) holds a {kind} lock", process_name(*pid)))
            .collect();
        named.join(", ")
    }))
}

/// The `FLOCK` entries of `/proc/locks` on the file `dev`:`ino`: (pid, "read"/"write").
/// A line reads `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`, the device in hex.
pub(crate) fn lock_holders(proc_locks: &str, dev: u64, ino: u64) -> Vec<(u32, &'static str)> {
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    proc_locks
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            let (class, _, mode, pid, file) = (
                words.next()?,
                words.next()?,
                words.next()?,
                words.next()?,
                words.next()?,
            );
            if class != "FLOCK" || file != want {
                return None;
            }
            let kind = if mode == "WRITE" { "write" } else { "read" };
            Some((pid.parse().ok()?, kind))
        })
        .collect()
}

/// `comm` of process `pid`, or "a process" when it cannot be read.
fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|n| n.trim_end().chars().filter(|c| !c.is_control()).collect())
        .unwrap_or_else(|_| "a process".into())
}

impl Disk {
    /// Opens `path` for reading, and for writing unless `readonly`, and locks it as
    /// QEMU does: a writer alone, or any number of readers (see `lock`).
    pub fn open(path: &Path, readonly: bool) -> Result<Disk, DiskError> {
        let open_error = |source| DiskError::Open {
            path: path.to_owned(),
            source,
        };
        // Non-blocking: a FIFO opened for reading alone would wait for a writer for
        // ever. Regular files ignore the flag.
        let file = OpenOptions::new()
            .read(true)
            .write(!readonly)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(open_error)?;
        let meta = file.metadata().map_err(open_error)?;
        if !meta.is_file() {
            return Err(DiskError::NotAFile {
                path: path.to_owned(),
            });
        }
        lock(&file, readonly, &meta).map_err(|e| match e {
            LockError::Held(holder) => DiskError::Locked {
                path: path.to_owned(),
                holder,
            },
            LockError::Io(source) => open_error(source),
        })?;
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
            file_id: (meta.dev(), meta.ino()),
            volatile: memory_only(&file),
            file,
            size,
            readonly,
            id,
        })
    }

    /// The (device, inode) of the open file, to tell it from other files the run uses.
    pub fn file_id(&self) -> (u64, u64) {
        self.file_id
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
