//! The `fs` server: the gate side of the file system the run asked for, the FAT
//! [`Volume`] over the `blk` interface or the [`RamFs`]. Their calls share one gate
//! side through [`Files`], except the data paths: on RAM a read or write copies once,
//! between the caller's shared buffer and the file (no private bounce buffer).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use flexos_blkdev::extents::{self, EXTENT_BYTES, Extent};
use flexos_blkdev::{Driver, blk, copy, request as blk_codes};
use flexos_kernel::abi::BOOT_FLAG_DISK;
use flexos_kernel::gate::{self, GateRouter, router};
use flexos_kernel::rpc::{GateError, SharedBuf, SharedBytes};
use flexos_kernel::sync::SpinLock;
use flexos_kernel::{Args, boot_info, println};

use crate::batch;
use crate::cache::{BLOCK, SECTOR, Sectors};
use crate::clock::Clock;
use crate::codes::{E_BAD_BUFFER, E_BUSY, E_INVALID, E_IO, E_NO_DISK, E_READ_ONLY, describe};
use crate::files::Files;
use crate::fs;
use crate::names;
use crate::ramfs::{CAP_KEY, MAX_CAP_MIB, RAMFS_ARG, RamFs, default_cap, parse_cap};
use crate::volume::Volume;

/// Bytes of the shared data buffer: a batch of dirty blocks, or one read.
const DATA: usize = 16 * BLOCK;
/// Most extents of one batch: one per block of [`DATA`].
const MAX_EXTENTS: usize = DATA / BLOCK;

/// The `blk` interface as the file system sees it: a shared data buffer and an extent
/// list, allocated for the blkdev component, whose device reads and fills the data
/// buffer itself.
pub struct BlkSectors {
    disk: blk::Client<'static, Driver, GateRouter>,
    capacity: u64,
    data: SharedBuf,
    list: SharedBuf,
}

/// A `blk` result or gate failure as an `fs` code.
fn blk_code(code: i64) -> i64 {
    match code {
        blk_codes::E_NO_DEVICE => E_NO_DISK,
        blk_codes::E_READ_ONLY => E_READ_ONLY,
        _ => E_IO,
    }
}

/// A `blk` call's result: `Ok` if it moved exactly `want` bytes.
fn moved(result: Result<i64, GateError>, want: usize) -> Result<(), i64> {
    match result {
        Ok(n) if n == want as i64 => Ok(()),
        Ok(code) if code < 0 => Err(blk_code(code)),
        _ => Err(E_IO),
    }
}

impl BlkSectors {
    /// Connects to the blkdev component; `Err` with the code if there is no disk.
    fn connect(blkdev: u16) -> Result<Self, i64> {
        let disk = blk::Client::new(router(), blkdev, &flexos_blkdev::SERVER.0);
        let capacity = disk.capacity().map_err(|_| E_IO)?;
        if capacity == 0 {
            return Err(E_NO_DISK);
        }
        let data = gate::shared_alloc(blkdev, DATA).ok_or(E_IO)?;
        let list = gate::shared_alloc(blkdev, MAX_EXTENTS * EXTENT_BYTES).ok_or(E_IO)?;
        Ok(BlkSectors {
            disk,
            capacity,
            data,
            list,
        })
    }

    /// Writes the extents gathered in `extents` (data already in the data buffer).
    fn write_extents(
        &mut self,
        extents: &mut Vec<Extent>,
        used: usize,
        flush: bool,
    ) -> Result<(), i64> {
        let mut raw = [0u8; MAX_EXTENTS * EXTENT_BYTES];
        for (i, e) in extents.iter().enumerate() {
            raw[i * EXTENT_BYTES..(i + 1) * EXTENT_BYTES].copy_from_slice(&e.encode());
        }
        let len = extents.len() * EXTENT_BYTES;
        let list = self.list.slice(0, len as u32).ok_or(E_IO)?;
        gate::bytes(list)
            .and_then(|b| b.write(0, &raw[..len]))
            .map_err(|_| E_IO)?;
        extents.clear();
        moved(self.disk.write_extents(list, self.data, flush), used)
    }
}

impl Sectors for BlkSectors {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), i64> {
        for (i, chunk) in buf.chunks_mut(DATA).enumerate() {
            let window = self.data.slice(0, chunk.len() as u32).ok_or(E_IO)?;
            let at = sector + (i * DATA / SECTOR) as u64;
            moved(self.disk.read(at, window), chunk.len())?;
            gate::bytes(window)
                .and_then(|b| copy::read(&b, 0, chunk))
                .map_err(|_| E_IO)?;
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), i64> {
        self.write_batch(&[(sector, buf)], false)
    }

    fn flush(&mut self) -> Result<(), i64> {
        match self.disk.flush() {
            Ok(0) => Ok(()),
            Ok(code) => Err(blk_code(code)),
            Err(_) => Err(E_IO),
        }
    }

    fn write_batch(&mut self, blocks: &[(u64, &[u8])], flush: bool) -> Result<(), i64> {
        let bytes = gate::bytes(self.data).map_err(|_| E_IO)?;
        let mut extents = Vec::with_capacity(MAX_EXTENTS);
        let mut used = 0;
        for &(sector, data) in blocks {
            for (i, chunk) in data.chunks(DATA).enumerate() {
                if used + chunk.len() > DATA || extents.len() == MAX_EXTENTS {
                    self.write_extents(&mut extents, used, false)?;
                    used = 0;
                }
                copy::write(&bytes, used, chunk).map_err(|_| E_IO)?;
                let at = sector + (i * DATA / SECTOR) as u64;
                extents::push(&mut extents, at, used as u32, chunk.len() as u32)?;
                used += chunk.len();
            }
        }
        if extents.is_empty() {
            return if flush { self.flush() } else { Ok(()) };
        }
        self.write_extents(&mut extents, used, flush)
    }
}

enum State {
    /// No call yet: the file system is chosen at the first.
    Unchosen,
    /// Mounting failed with this code (said once on the console).
    Failed(i64),
    Mounted(Volume<BlkSectors>),
    /// Boxed: its table of open ids would make every state that large.
    Ram(Box<RamFs>),
}

struct StateCell(State);

// SAFETY: a compartment runs on one vCPU and the state is only reached under the lock;
// the `Rc`s inside the volume never leave it, so no two contexts touch their counts.
unsafe impl Send for StateCell {}

/// The file system a call runs on.
enum Backend<'a> {
    Fat(&'a mut Volume<BlkSectors>),
    Ram(&'a mut RamFs),
}

impl<'a> Backend<'a> {
    /// For the calls whose gate side is the same on both.
    fn files(self) -> &'a mut dyn Files {
        match self {
            Backend::Fat(volume) => volume,
            Backend::Ram(ram) => ram,
        }
    }
}

/// The vfs component's server: the volume on the disk of the `blkdev` component, or the
/// RAM file system (guest argument `ramfs`), chosen at the first call.
pub struct Vfs {
    blkdev: u16,
    state: SpinLock<StateCell>,
}

impl Vfs {
    /// A server over the component `blkdev` (the image's `components!` id).
    pub const fn new(blkdev: u16) -> Self {
        Vfs {
            blkdev,
            state: SpinLock::new(StateCell(State::Unchosen)),
        }
    }

    /// Runs `f` on the file system, or returns the error code.
    fn with(&self, f: impl FnOnce(Backend<'_>) -> i64) -> i64 {
        let Some(mut guard) = self.state.try_lock() else {
            return E_BUSY;
        };
        if let State::Unchosen = guard.0 {
            guard.0 = self.choose();
        }
        match &mut guard.0 {
            State::Ram(ram) => f(Backend::Ram(ram)),
            State::Mounted(volume) => f(Backend::Fat(volume)),
            State::Failed(code) => *code,
            State::Unchosen => E_IO,
        }
    }

    /// The file system the guest arguments ask for: RAM with `ramfs`, else the disk's
    /// volume, mounted now.
    fn choose(&self) -> State {
        let args = Args::of_run();
        if args.iter().any(|arg| arg == RAMFS_ARG) {
            let half = default_cap(boot_info().heap_size);
            let cap = match args.get(CAP_KEY) {
                None => half,
                Some(text) => parse_cap(text).unwrap_or_else(|| {
                    println!(
                        "vfs: bad {CAP_KEY}={text}: want MiB (0..={MAX_CAP_MIB}); using half the heap"
                    );
                    half
                }),
            };
            // The disk (attached to the compartment hosting blkdev, maybe not this one)
            // is left alone; said so the run's output does not suggest otherwise.
            if boot_info().flags & BOOT_FLAG_DISK != 0 {
                println!("vfs: ramfs: the disk is not used");
            }
            return State::Ram(Box::new(RamFs::new(cap)));
        }
        match BlkSectors::connect(self.blkdev) {
            // Timestamps from the host's clock (passed in the boot info).
            Ok(dev) => match Volume::mount_with(dev, Clock::new(flexos_kernel::time::unix_ns)) {
                Ok(volume) => State::Mounted(volume),
                Err((code, why)) => {
                    println!("vfs: cannot mount the disk: {why}");
                    State::Failed(code)
                }
            },
            Err(code) => {
                println!("vfs: cannot mount the disk: {}", describe(code));
                State::Failed(code)
            }
        }
    }
}

/// The name in `buf`, copied out and checked.
fn name_of(buf: SharedBuf) -> Result<alloc::string::String, i64> {
    let bytes = gate::bytes(buf).map_err(|_| E_BAD_BUFFER)?;
    if bytes.len() > names::MAX_NAME {
        return Err(E_INVALID);
    }
    let mut raw = vec![0u8; bytes.len()];
    bytes.read(0, &mut raw).map_err(|_| E_BAD_BUFFER)?;
    names::check(&raw)
        .map(alloc::string::String::from)
        .map_err(|_| E_INVALID)
}

/// Runs `f` with a checked name, or returns the error code.
fn with_name(buf: SharedBuf, f: impl FnOnce(&str) -> i64) -> i64 {
    match name_of(buf) {
        Ok(name) => f(&name),
        Err(code) => code,
    }
}

/// Most write-list entries copied out onto the stack (more go to the heap): the app's
/// storage sends at most 64.
const STACK_ENTRIES: usize = 64;

/// `write_batch` on RAM: each entry's data copied once, straight from the shared data
/// buffer into its file.
fn ram_batch(ram: &mut RamFs, raw: &[u8], data: &SharedBytes<'_>, sync_file: i64) -> i64 {
    let total = match batch::check(raw, data.len()) {
        Ok(total) => total,
        Err(code) => return code,
    };
    let mut at = 0;
    for e in batch::entries(raw) {
        let len = e.len as usize;
        // `check` bounded the entries' data by the buffer, so the copy cannot fail.
        let n = ram.write_with(i64::from(e.file), e.offset, len, |dst| {
            copy::read(data, at, dst).map_err(|_| E_BAD_BUFFER)
        });
        if n < 0 {
            return n;
        }
        at += len;
    }
    if sync_file >= 0 {
        let code = ram.sync(sync_file);
        if code < 0 {
            return code;
        }
    }
    total as i64
}

impl fs::Api for Vfs {
    fn open(&self, name: SharedBuf, create: bool) -> i64 {
        with_name(name, |n| self.with(|b| b.files().open(n, create)))
    }

    fn read_at(&self, file: i64, offset: i64, buf: SharedBuf) -> i64 {
        let (Some(offset), Ok(bytes)) = (names::offset(offset), gate::bytes(buf)) else {
            return if offset < 0 { E_INVALID } else { E_BAD_BUFFER };
        };
        self.with(|b| match b {
            Backend::Ram(ram) => ram.read_with(file, offset, bytes.len(), |src| {
                copy::write(&bytes, 0, src).map_err(|_| E_BAD_BUFFER)
            }),
            Backend::Fat(volume) => {
                let mut data = vec![0u8; bytes.len()];
                let n = volume.read_at(file, offset, &mut data);
                if n > 0 && copy::write(&bytes, 0, &data[..n as usize]).is_err() {
                    return E_BAD_BUFFER;
                }
                n
            }
        })
    }

    fn write_at(&self, file: i64, offset: i64, buf: SharedBuf) -> i64 {
        let (Some(offset), Ok(bytes)) = (names::offset(offset), gate::bytes(buf)) else {
            return if offset < 0 { E_INVALID } else { E_BAD_BUFFER };
        };
        self.with(|b| match b {
            Backend::Ram(ram) => ram.write_with(file, offset, bytes.len(), |dst| {
                copy::read(&bytes, 0, dst).map_err(|_| E_BAD_BUFFER)
            }),
            Backend::Fat(volume) => {
                let mut data = vec![0u8; bytes.len()];
                if copy::read(&bytes, 0, &mut data).is_err() {
                    return E_BAD_BUFFER;
                }
                volume.write_at(file, offset, &data)
            }
        })
    }

    fn write_batch(&self, list: SharedBuf, data: SharedBuf, sync_file: i64) -> i64 {
        let (Ok(list), Ok(data)) = (gate::bytes(list), gate::bytes(data)) else {
            return E_BAD_BUFFER;
        };
        // Copied out once, then checked and used: the caller may change the buffers.
        let mut stack = [0u8; STACK_ENTRIES * batch::ENTRY_BYTES];
        let mut heap = Vec::new();
        let raw: &mut [u8] = if list.len() <= stack.len() {
            &mut stack[..list.len()]
        } else {
            heap.resize(list.len(), 0);
            &mut heap
        };
        if list.read(0, raw).is_err() {
            return E_BAD_BUFFER;
        }
        let raw: &[u8] = raw;
        self.with(|b| {
            let volume = match b {
                Backend::Ram(ram) => return ram_batch(ram, raw, &data, sync_file),
                Backend::Fat(volume) => volume,
            };
            let entries = match batch::parse(raw, data.len()) {
                Ok(entries) => entries,
                Err(code) => return code,
            };
            let total: usize = entries.iter().map(|e| e.len as usize).sum();
            let mut bytes = vec![0u8; total];
            if copy::read(&data, 0, &mut bytes).is_err() {
                return E_BAD_BUFFER;
            }
            let mut at = 0;
            for e in &entries {
                let n =
                    volume.write_at(i64::from(e.file), e.offset, &bytes[at..at + e.len as usize]);
                if n < 0 {
                    return n;
                }
                at += e.len as usize;
            }
            if sync_file >= 0 {
                let code = volume.sync(sync_file);
                if code < 0 {
                    return code;
                }
            }
            total as i64
        })
    }

    fn size(&self, file: i64) -> i64 {
        self.with(|b| b.files().size(file))
    }

    fn truncate(&self, file: i64, len: i64) -> i64 {
        match names::offset(len) {
            Some(len) => self.with(|b| b.files().truncate(file, len)),
            None => E_INVALID,
        }
    }

    fn sync(&self, file: i64) -> i64 {
        self.with(|b| b.files().sync(file))
    }

    fn delete(&self, name: SharedBuf) -> i64 {
        with_name(name, |n| self.with(|b| b.files().delete(n)))
    }

    fn rename(&self, from: SharedBuf, to: SharedBuf) -> i64 {
        with_name(from, |f| {
            with_name(to, |t| self.with(|b| b.files().rename(f, t)))
        })
    }

    fn exists(&self, name: SharedBuf) -> i64 {
        with_name(name, |n| self.with(|b| b.files().exists(n)))
    }

    fn close(&self, file: i64) -> i64 {
        self.with(|b| b.files().close(file))
    }

    fn list(&self, buf: SharedBuf) -> i64 {
        let Ok(bytes) = gate::bytes(buf) else {
            return E_BAD_BUFFER;
        };
        self.with(|b| match b.files().list() {
            Ok(text) => {
                let n = text.len().min(bytes.len());
                if bytes.write(0, &text.as_bytes()[..n]).is_err() {
                    return E_BAD_BUFFER;
                }
                text.len() as i64
            }
            Err(code) => code,
        })
    }
}
