//! The files of a FAT volume (lamfat) over the sector [`Cache`], addressed by small
//! integer ids: what the `fs` server does, minus the gate. Plain Rust over any
//! [`Sectors`], so it is tested on the host against a disk in memory.
//!
//! Durability: [`Volume::sync`], [`Volume::truncate`] and [`Volume::delete`] write the
//! directory entry (size, first cluster) into the cache, write every dirty block back
//! and flush the device before they return: those are the commit points a database
//! relies on. Everything else stays in the write-back cache. A directory entry is
//! written behind a cache barrier ([`Cache::barrier`]), so on the disk a file's size
//! never covers data that is not there yet (SQLite's SAFE_APPEND), even if the run is
//! killed or the host crashes in the middle of a write-back.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt::Write as _;

use lamfat::{
    Error, FileSystem, FsOptions, IoBase, IoError, LossyOemCpConverter, Read, Seek, SeekFrom, Write,
};

use crate::cache::{Cache, Sectors};
use crate::clock::Clock;
use crate::codes::{
    E_BAD_FILE, E_BUSY, E_INVALID, E_IO, E_NO_SPACE, E_NOT_FAT, E_NOT_FOUND, E_TOO_MANY,
};
use crate::files::Files;
use crate::names;

/// Most files open at once.
pub const MAX_OPEN: usize = 32;
/// Cache size in 4 KiB blocks (4 MiB).
pub const CACHE_BLOCKS: usize = 1024;
/// Largest file FAT can hold (the RAM file system keeps the same limit).
pub const MAX_FILE: u64 = u32::MAX as u64;

/// An I/O error code from the cache, as lamfat wants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskError(pub i64);

impl core::fmt::Display for DiskError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "code {}", self.0)
    }
}

impl IoError for DiskError {
    fn is_interrupted(&self) -> bool {
        false
    }
    fn new_unexpected_eof_error() -> Self {
        DiskError(E_IO)
    }
    fn new_write_zero_error() -> Self {
        DiskError(E_NO_SPACE)
    }
}

/// The byte stream lamfat reads and writes: a position over the shared cache.
pub struct Disk<D> {
    cache: Rc<RefCell<Cache<D>>>,
    pos: u64,
}

impl<D> IoBase for Disk<D> {
    type Error = DiskError;
}

impl<D: Sectors> Read for Disk<D> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DiskError> {
        let n = self
            .cache
            .borrow_mut()
            .read_at(self.pos, buf)
            .map_err(DiskError)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<D: Sectors> Write for Disk<D> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, DiskError> {
        let n = self
            .cache
            .borrow_mut()
            .write_at(self.pos, buf)
            .map_err(DiskError)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        // lamfat flushes after metadata updates; durability is the file layer's sync.
        Ok(())
    }
}

impl<D: Sectors> Seek for Disk<D> {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, DiskError> {
        let len = self.cache.borrow().len();
        let new = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or(DiskError(E_INVALID))?;
        Ok(self.pos)
    }
}

type Fs<D> = FileSystem<Disk<D>, Clock, LossyOemCpConverter>;
type FatFile<D> = lamfat::File<'static, Disk<D>, Clock, LossyOemCpConverter>;

/// A lamfat error as an interface code.
fn code(e: Error<DiskError>) -> i64 {
    match e {
        Error::Io(DiskError(c)) => c,
        Error::NotFound => E_NOT_FOUND,
        Error::NotEnoughSpace => E_NO_SPACE,
        Error::CorruptedFileSystem => E_NOT_FAT,
        Error::InvalidInput
        | Error::InvalidFileNameLength
        | Error::UnsupportedFileNameCharacter
        | Error::AlreadyExists
        | Error::DirectoryIsNotEmpty => E_INVALID,
        _ => E_IO,
    }
}

struct Open<D: Sectors + 'static> {
    name: String,
    file: FatFile<D>,
    /// The file's size, kept here: lamfat finds it by seeking to the end, and a seek
    /// to another cluster walks the cluster chain from the file's first cluster, so a
    /// write into a 4 MiB WAL cost two walks of ~1000 FAT entries.
    size: u64,
}

/// A mounted volume and its open files.
pub struct Volume<D: Sectors + 'static> {
    fs: &'static Fs<D>,
    cache: Rc<RefCell<Cache<D>>>,
    files: Vec<Option<Open<D>>>,
}

/// Why mounting failed: the code and a one-line reason.
pub type MountError = (i64, String);

impl<D: Sectors + 'static> Volume<D> {
    /// Mounts the FAT volume on `dev`, without a clock (files are stamped
    /// 1980-01-01 00:00:00). The file system lives as long as the program (open files
    /// borrow it), so mount once.
    pub fn mount(dev: D) -> Result<Self, MountError> {
        Self::mount_with(dev, Clock::UNKNOWN)
    }

    /// Mounts the FAT volume on `dev`; files created and written are stamped with
    /// `clock`'s time.
    pub fn mount_with(dev: D, clock: Clock) -> Result<Self, MountError> {
        let cache = Rc::new(RefCell::new(Cache::new(dev, CACHE_BLOCKS)));
        let disk = Disk {
            cache: cache.clone(),
            pos: 0,
        };
        match FileSystem::new(disk, FsOptions::new().time_provider(clock)) {
            Ok(fs) => Ok(Volume {
                fs: Box::leak(Box::new(fs)),
                cache,
                files: Vec::new(),
            }),
            Err(Error::Io(DiskError(c))) => Err((c, String::from("the disk cannot be read"))),
            Err(e) => {
                let mut why = String::new();
                let _ = write!(why, "the disk holds no FAT file system ({e})");
                Err((E_NOT_FAT, why))
            }
        }
    }

    /// The cache (for statistics and tests).
    pub fn cache(&self) -> core::cell::Ref<'_, Cache<D>> {
        self.cache.borrow()
    }

    fn file(&mut self, id: i64) -> Result<&mut Open<D>, i64> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.files.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or(E_BAD_FILE)
    }

    /// Opens `name` in the root directory (creating it, empty, if `create` and it does
    /// not exist); returns its id.
    pub fn open(&mut self, name: &str, create: bool) -> i64 {
        let root = self.fs.root_dir();
        let opened = if create && names::creatable(name) {
            root.create_file(name)
        } else if create {
            // lamfat would panic making up a short name for it (see `creatable`), even
            // to find that it exists: open it if it does, else refuse the name.
            match root.open_file(name) {
                Err(Error::NotFound) => return E_INVALID,
                other => other,
            }
        } else {
            root.open_file(name)
        };
        let mut file = match opened {
            Ok(f) => f,
            Err(e) => return code(e),
        };
        let size = match file.seek(SeekFrom::End(0)) {
            Ok(n) => n,
            Err(e) => return code(e),
        };
        let open = Open {
            name: String::from(name),
            file,
            size,
        };
        if let Some(i) = self.files.iter().position(Option::is_none) {
            self.files[i] = Some(open);
            i as i64
        } else if self.files.len() < MAX_OPEN {
            self.files.push(Some(open));
            (self.files.len() - 1) as i64
        } else {
            E_TOO_MANY
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end).
    pub fn read_at(&mut self, id: i64, offset: u64, buf: &mut [u8]) -> i64 {
        let mut run = |f: &mut FatFile<D>, size: u64| -> Result<usize, Error<DiskError>> {
            if offset >= size {
                return Ok(0);
            }
            f.seek(SeekFrom::Start(offset))?;
            let mut done = 0;
            while done < buf.len() {
                match f.read(&mut buf[done..])? {
                    0 => break,
                    n => done += n,
                }
            }
            Ok(done)
        };
        match self.file(id) {
            Ok(open) => run(&mut open.file, open.size).map_or_else(code, |n| n as i64),
            Err(c) => c,
        }
    }

    /// Writes `data` at `offset` (a gap past the end is filled with zeros); returns the
    /// bytes written.
    pub fn write_at(&mut self, id: i64, offset: u64, data: &[u8]) -> i64 {
        if offset.saturating_add(data.len() as u64) > MAX_FILE {
            return E_NO_SPACE;
        }
        match self.file(id) {
            Ok(open) => match write_at(open, offset, data) {
                Ok(()) => data.len() as i64,
                Err(e) => code(e),
            },
            Err(c) => c,
        }
    }

    /// The file's size in bytes.
    pub fn size(&mut self, id: i64) -> i64 {
        match self.file(id) {
            Ok(open) => open.size as i64,
            Err(c) => c,
        }
    }

    /// Sets the file's size to `len` (cutting or zero-filling), then syncs.
    pub fn truncate(&mut self, id: i64, len: u64) -> i64 {
        if len > MAX_FILE {
            return E_NO_SPACE;
        }
        let run = |open: &mut Open<D>| -> Result<(), Error<DiskError>> {
            if len < open.size {
                open.file.seek(SeekFrom::Start(len))?;
                open.file.truncate()?;
                open.size = len;
            } else if len > open.size {
                write_at(open, len, &[])?;
            }
            Ok(())
        };
        match self.file(id) {
            Ok(open) => match run(open) {
                Ok(()) => self.sync(id),
                Err(e) => code(e),
            },
            Err(c) => c,
        }
    }

    /// Makes the file's data and size durable: writes its directory entry, writes back
    /// the cache and flushes the device.
    pub fn sync(&mut self, id: i64) -> i64 {
        // The entry (size) goes to the disk after the data it covers.
        self.cache.borrow_mut().barrier();
        match self.file(id) {
            Ok(open) => match open.file.flush() {
                Ok(()) => self.sync_all(),
                Err(e) => code(e),
            },
            Err(c) => c,
        }
    }

    /// Writes back the whole cache and flushes the device.
    pub fn sync_all(&mut self) -> i64 {
        match self.cache.borrow_mut().sync() {
            Ok(()) => 0,
            Err(c) => c,
        }
    }

    /// Closes a file id (its directory entry is written to the cache).
    pub fn close(&mut self, id: i64) -> i64 {
        match self.file(id) {
            Ok(_) => {
                self.cache.borrow_mut().barrier();
                let open = self.files[id as usize].take();
                match open.map(|mut o| o.file.flush()) {
                    Some(Err(e)) => code(e),
                    _ => 0,
                }
            }
            Err(c) => c,
        }
    }

    /// Deletes `name` (closing any id still open on it) and makes the deletion durable.
    pub fn delete(&mut self, name: &str) -> i64 {
        for slot in self.files.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|o| o.name.eq_ignore_ascii_case(name))
            {
                *slot = None;
            }
        }
        match self.fs.root_dir().remove(name) {
            Ok(()) => self.sync_all(),
            Err(e) => code(e),
        }
    }

    /// Renames `from` to `to` in the root directory, replacing a file called `to`
    /// (removed first: a crash in between leaves `from` and no `to`, never a torn
    /// file); durable on 0. Either name open is `E_BUSY`.
    pub fn rename(&mut self, from: &str, to: &str) -> i64 {
        let open = |n: &str| {
            self.files
                .iter()
                .flatten()
                .any(|o| o.name.eq_ignore_ascii_case(n))
        };
        if open(from) || open(to) {
            return E_BUSY;
        }
        let root = self.fs.root_dir();
        if let Err(e) = root.open_file(from) {
            return code(e);
        }
        if from.eq_ignore_ascii_case(to) && from == to {
            return 0;
        }
        if !from.eq_ignore_ascii_case(to) {
            match root.open_file(to) {
                Ok(_) => {
                    if let Err(e) = root.remove(to) {
                        return code(e);
                    }
                }
                Err(Error::NotFound) => {}
                Err(e) => return code(e),
            }
        }
        if !names::creatable(to) {
            return E_INVALID;
        }
        match root.rename(from, &root, to) {
            Ok(()) => self.sync_all(),
            Err(e) => code(e),
        }
    }

    /// 1 if `name` exists in the root directory, 0 if not.
    pub fn exists(&mut self, name: &str) -> i64 {
        match self.fs.root_dir().open_file(name) {
            Ok(_) => 1,
            Err(Error::NotFound) => 0,
            Err(e) => code(e),
        }
    }

    /// The root directory, one `name<TAB>size` line per file or `name/` per directory.
    pub fn list(&mut self) -> Result<String, i64> {
        let mut out = String::new();
        for entry in self.fs.root_dir().iter() {
            let entry = entry.map_err(code)?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            if entry.is_dir() {
                let _ = writeln!(out, "{name}/");
            } else {
                let _ = writeln!(out, "{name}\t{}", entry.len());
            }
        }
        Ok(out)
    }
}

impl<D: Sectors + 'static> Files for Volume<D> {
    fn open(&mut self, name: &str, create: bool) -> i64 {
        Volume::open(self, name, create)
    }
    fn read_at(&mut self, id: i64, offset: u64, buf: &mut [u8]) -> i64 {
        Volume::read_at(self, id, offset, buf)
    }
    fn write_at(&mut self, id: i64, offset: u64, data: &[u8]) -> i64 {
        Volume::write_at(self, id, offset, data)
    }
    fn size(&mut self, id: i64) -> i64 {
        Volume::size(self, id)
    }
    fn truncate(&mut self, id: i64, len: u64) -> i64 {
        Volume::truncate(self, id, len)
    }
    fn sync(&mut self, id: i64) -> i64 {
        Volume::sync(self, id)
    }
    fn delete(&mut self, name: &str) -> i64 {
        Volume::delete(self, name)
    }
    fn rename(&mut self, from: &str, to: &str) -> i64 {
        Volume::rename(self, from, to)
    }
    fn exists(&mut self, name: &str) -> i64 {
        Volume::exists(self, name)
    }
    fn close(&mut self, id: i64) -> i64 {
        Volume::close(self, id)
    }
    fn list(&mut self) -> Result<String, i64> {
        Volume::list(self)
    }
}

/// Writes `data` at `offset` of an open file, zero-filling from the current end if
/// `offset` is past it, and keeps its size. (Sequential writes seek nowhere: the file's
/// position is already where the next one goes.)
fn write_at<D: Sectors>(
    open: &mut Open<D>,
    offset: u64,
    data: &[u8],
) -> Result<(), Error<DiskError>> {
    let f = &mut open.file;
    let result = (|| {
        if offset > open.size {
            f.seek(SeekFrom::Start(open.size))?;
            let zeros = [0u8; 512];
            let mut gap = offset - open.size;
            while gap > 0 {
                let n = gap.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                gap -= n as u64;
            }
        } else {
            f.seek(SeekFrom::Start(offset))?;
        }
        f.write_all(data)
    })();
    open.size = match result {
        Ok(()) => open.size.max(offset + data.len() as u64),
        // Part of it may be written: ask the file (a slow seek, on the error path only).
        Err(_) => f.seek(SeekFrom::End(0)).unwrap_or(open.size),
    };
    result
}
