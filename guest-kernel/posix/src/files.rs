//! Files: paths, `open`, and the reads and writes of files, through the `fs` gate of
//! the vfs component (FAT on the disk, or its RAM file system).
//!
//! The vfs serves one flat directory, the disk's root: `/name`, `./name` and `name`
//! are the same file, `/` and `.` the directory itself. A few device files answer
//! here without the vfs: `/dev/null`, `/dev/urandom` and `/dev/random`. Any other
//! path (a subdirectory, `/proc`, `/etc`) does not exist.
//!
//! Bytes cross in one transfer buffer of the shared heap (64 KiB), allocated for the
//! vfs component at the first file operation: a larger read or write goes in chunks,
//! one gate call each.

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use flexos_kernel::gate::{self, GateRouter};
use flexos_kernel::rpc::{GateError, SharedBuf};
use flexos_vfs::codes as fs_codes;
use flexos_vfs::{Vfs, fs};

use crate::Global;
use crate::builtin::{self, Builtin};
use crate::fd::{self, Kind};
use crate::linux::*;

/// Bytes of the transfer buffer.
const TRANSFER: usize = 64 * 1024;

/// The vfs component this image calls, set by [`crate::System`].
pub struct Store {
    client: fs::Client<'static, Vfs, GateRouter>,
    component: u16,
    buf: Option<SharedBuf>,
}

static STORE: Global<RefCell<Option<Store>>> = Global::new(RefCell::new(None));

/// Connects the layer to the vfs component `component`, served by `server`.
pub fn connect(server: &'static fs::Server<Vfs>, component: u16) {
    *STORE.get().borrow_mut() = Some(Store {
        client: fs::Client::new(gate::router(), component, &server.0),
        component,
        buf: None,
    });
}

/// An `fs` code as an errno.
fn errno(code: i64) -> i64 {
    -match code {
        fs_codes::E_NOT_FOUND => ENOENT,
        fs_codes::E_BAD_FILE => EBADF,
        fs_codes::E_BUSY => EBUSY,
        fs_codes::E_INVALID => EINVAL,
        fs_codes::E_TOO_MANY => EMFILE,
        fs_codes::E_NO_SPACE => ENOSPC,
        fs_codes::E_READ_ONLY => EROFS,
        fs_codes::E_NO_DISK => ENOENT,
        _ => EIO,
    }
}

fn gate_code(r: Result<i64, GateError>) -> i64 {
    r.unwrap_or(fs_codes::E_IO)
}

/// Runs `f` with the vfs client and the transfer buffer; `-ENOENT` when the image has
/// no vfs component, `-ENOMEM` when the shared heap has no room for the buffer.
fn with_store<R>(
    f: impl FnOnce(&fs::Client<'static, Vfs, GateRouter>, SharedBuf) -> Result<R, i64>,
) -> Result<R, i64> {
    let (client_ptr, buf) = {
        let mut guard = STORE.get().borrow_mut();
        let Some(store) = guard.as_mut() else {
            return Err(-ENOENT);
        };
        if store.buf.is_none() {
            store.buf = gate::shared_alloc(store.component, TRANSFER);
        }
        let Some(buf) = store.buf else {
            return Err(-ENOMEM);
        };
        (
            &store.client as *const fs::Client<'static, Vfs, GateRouter>,
            buf,
        )
    };
    // SAFETY: the store is set once at start and never replaced or dropped, so the
    // client lives for the run; the borrow is released so that a gate call (which may
    // serve calls to this compartment) never runs inside it.
    f(unsafe { &*client_ptr }, buf)
}

/// Puts `name` at the start of the transfer buffer; the slice holding it.
fn name_buf(buf: SharedBuf, name: &str, at: usize) -> Result<SharedBuf, i64> {
    if name.len() > 255 {
        return Err(-ENAMETOOLONG);
    }
    let bytes = gate::bytes(buf).map_err(|_| -EIO)?;
    bytes.copy_in(at, name.as_bytes()).map_err(|_| -EIO)?;
    buf.slice(at as u32, name.len() as u32).ok_or(-EIO)
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Path {
    Root,
    /// A file in the root directory.
    Name(String),
    Null,
    Random,
    /// A built-in file outside the root directory (`/etc/passwd`).
    Builtin(&'static [u8]),
    /// Nothing here serves it.
    Missing,
}

/// Reads the NUL-terminated path at `ptr`.
pub fn c_path(ptr: *const u8) -> Result<String, i64> {
    if ptr.is_null() {
        return Err(-EFAULT);
    }
    let mut bytes = Vec::new();
    loop {
        // SAFETY: musl passes a NUL-terminated string; reading stops at the NUL or
        // PATH_MAX.
        let b = unsafe { ptr.add(bytes.len()).read() };
        if b == 0 {
            break;
        }
        bytes.push(b);
        if bytes.len() > 4096 {
            return Err(-ENAMETOOLONG);
        }
    }
    String::from_utf8(bytes).map_err(|_| -ENOENT)
}

/// Resolves `path` (relative to the root, the only directory).
pub fn resolve(path: &str) -> Path {
    if path.is_empty() {
        return Path::Missing;
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    match parts.as_slice() {
        [] => Path::Root,
        ["dev", "null"] => Path::Null,
        ["dev", "urandom"] | ["dev", "random"] => Path::Random,
        parts if builtin::fixed(parts).is_some() => {
            Path::Builtin(builtin::fixed(parts).expect("just matched"))
        }
        [name] if *name != ".." => Path::Name(String::from(*name)),
        _ => Path::Missing,
    }
}

/// An open file of the vfs.
pub struct File {
    id: i64,
    pub offset: u64,
    pub append: bool,
    /// Opened read-only: its bytes may be kept here.
    readonly: bool,
    /// The file's bytes as of change [`CHANGES`] `.0`, read whole at the first read
    /// (`None` inside: larger than [`KEEP_MAX`], read from the vfs every time).
    kept: RefCell<Option<(u64, Option<Vec<u8>>)>>,
}

/// Largest file whose bytes a read-only descriptor keeps. A server reading a page per
/// request (Nginx, its descriptor held open by its open-file cache) then reads it with
/// no gate call, when the file system is in another compartment.
const KEEP_MAX: usize = 256 << 10;

/// Counts every change this layer makes to any file (writes, truncation, renames,
/// deletes): bytes kept under an older count are stale. The program is the vfs's only
/// client, so nothing else changes a file.
static CHANGES: Global<Cell<u64>> = Global::new(Cell::new(0));

fn changed() {
    let c = CHANGES.get();
    c.set(c.get().wrapping_add(1));
}

/// The root directory, open for `getdents64` and `fsync`.
pub struct Dir {
    /// Entries already returned.
    pub pos: usize,
}

impl File {
    pub fn close(self) {
        let _ = with_store(|c, _| Ok(gate_code(c.close(self.id))));
    }
}

/// `openat(AT_FDCWD, path, flags, mode)`.
pub fn open(path: &str, flags: u64) -> i64 {
    let cloexec = flags & O_CLOEXEC != 0;
    let status = flags & (O_ACCMODE | O_APPEND | O_NONBLOCK);
    match resolve(path) {
        Path::Missing => -ENOENT,
        Path::Null => fd::install(Kind::Null, status, cloexec),
        Path::Random => fd::install(Kind::Random, status, cloexec),
        Path::Builtin(bytes) => open_builtin(bytes, flags, status, cloexec),
        Path::Root => {
            if flags & O_ACCMODE != O_RDONLY {
                return -EISDIR;
            }
            fd::install(Kind::Dir(Dir { pos: 0 }), status, cloexec)
        }
        Path::Name(name) => {
            if flags & O_DIRECTORY != 0 {
                return -ENOTDIR;
            }
            let create = flags & O_CREAT != 0;
            let id = with_store(|c, buf| {
                let n = name_buf(buf, &name, 0)?;
                if create && flags & O_EXCL != 0 && gate_code(c.exists(n)) == 1 {
                    return Err(-EEXIST);
                }
                let id = gate_code(c.open(n, create));
                if id < 0 {
                    return Err(errno(id));
                }
                if flags & O_TRUNC != 0 && flags & O_ACCMODE != O_RDONLY {
                    changed();
                    let r = gate_code(c.truncate(id, 0));
                    if r < 0 {
                        let _ = c.close(id);
                        return Err(errno(r));
                    }
                }
                Ok(id)
            });
            match id {
                // Not on the disk: the image's default of that name, if it has one.
                Err(e) if e == -ENOENT && !create => match builtin::default_for(&name) {
                    Some(bytes) => open_builtin(bytes, flags, status, cloexec),
                    None => e,
                },
                Ok(id) => fd::install(
                    Kind::File(File {
                        id,
                        offset: 0,
                        append: flags & O_APPEND != 0,
                        readonly: flags & O_ACCMODE == O_RDONLY,
                        kept: RefCell::new(None),
                    }),
                    status,
                    cloexec,
                ),
                Err(e) => e,
            }
        }
    }
}

/// Opens a built-in file: read-only.
fn open_builtin(bytes: &'static [u8], flags: u64, status: u64, cloexec: bool) -> i64 {
    if flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0 {
        return -EROFS;
    }
    if flags & O_DIRECTORY != 0 {
        return -ENOTDIR;
    }
    fd::install(Kind::Builtin(Builtin { bytes, offset: 0 }), status, cloexec)
}

/// Reads up to `len` bytes at `offset` of `file` into `dst`: from its kept bytes when
/// it has them (read-only, small), else from the vfs.
pub fn read_at(file: &File, offset: u64, dst: *mut u8, len: usize) -> i64 {
    if let Some(bytes) = kept(file) {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let n = len.min(bytes.len() - start);
        // SAFETY: the caller's buffer holds `len` bytes; `n <= len`.
        unsafe { core::ptr::copy_nonoverlapping(bytes[start..].as_ptr(), dst, n) };
        return n as i64;
    }
    read_from_vfs(file, offset, dst, len)
}

/// The bytes `file` keeps, read whole now if it has none of the current change count;
/// `None` for a file opened to write, a large one, or an error (the caller then reads
/// from the vfs, which reports it).
fn kept(file: &File) -> Option<core::cell::Ref<'_, [u8]>> {
    if !file.readonly {
        return None;
    }
    let now = CHANGES.get().get();
    let fresh = matches!(&*file.kept.borrow(), Some((at, _)) if *at == now);
    if !fresh {
        *file.kept.borrow_mut() = None;
        let size = size_from_vfs(file);
        let bytes = usize::try_from(size)
            .ok()
            .filter(|&n| n <= KEEP_MAX)
            .and_then(|n| {
                let mut bytes = alloc::vec![0u8; n];
                (read_from_vfs(file, 0, bytes.as_mut_ptr(), n) == n as i64).then_some(bytes)
            });
        if size < 0 {
            return None;
        }
        *file.kept.borrow_mut() = Some((now, bytes));
    }
    core::cell::Ref::filter_map(file.kept.borrow(), |k| match k {
        Some((_, Some(bytes))) => Some(bytes.as_slice()),
        _ => None,
    })
    .ok()
}

fn read_from_vfs(file: &File, offset: u64, dst: *mut u8, len: usize) -> i64 {
    with_store(|c, buf| {
        let bytes = gate::bytes(buf).map_err(|_| -EIO)?;
        let mut done = 0usize;
        while done < len {
            let n = (len - done).min(TRANSFER);
            let chunk = buf.slice(0, n as u32).ok_or(-EIO)?;
            let got = gate_code(c.read_at(file.id, (offset + done as u64) as i64, chunk));
            if got < 0 {
                return if done > 0 {
                    Ok(done as i64)
                } else {
                    Err(errno(got))
                };
            }
            let got = (got as usize).min(n);
            // SAFETY: the caller's buffer holds `len` bytes; `done + got <= len`.
            let out = unsafe { core::slice::from_raw_parts_mut(dst.add(done), got) };
            bytes.copy_out(0, out).map_err(|_| -EIO)?;
            done += got;
            if got < n {
                break;
            }
        }
        Ok(done as i64)
    })
    .unwrap_or_else(|e| e)
}

/// Writes `len` bytes from `src` at `offset` of `file`.
pub fn write_at(file: &File, offset: u64, src: *const u8, len: usize) -> i64 {
    changed();
    with_store(|c, buf| {
        let bytes = gate::bytes(buf).map_err(|_| -EIO)?;
        let mut done = 0usize;
        while done < len || len == 0 {
            let n = (len - done).min(TRANSFER);
            // SAFETY: the caller's buffer holds `len` bytes; `done + n <= len`.
            let data = unsafe { core::slice::from_raw_parts(src.add(done), n) };
            bytes.copy_in(0, data).map_err(|_| -EIO)?;
            let chunk = buf.slice(0, n as u32).ok_or(-EIO)?;
            let put = gate_code(c.write_at(file.id, (offset + done as u64) as i64, chunk));
            if put < 0 {
                return if done > 0 {
                    Ok(done as i64)
                } else {
                    Err(errno(put))
                };
            }
            done += n;
            if len == 0 {
                break;
            }
        }
        Ok(done as i64)
    })
    .unwrap_or_else(|e| e)
}

/// The size of `file`.
pub fn size(file: &File) -> i64 {
    if let Some(bytes) = kept(file) {
        return bytes.len() as i64;
    }
    size_from_vfs(file)
}

fn size_from_vfs(file: &File) -> i64 {
    with_store(|c, _| {
        let s = gate_code(c.size(file.id));
        if s < 0 { Err(errno(s)) } else { Ok(s) }
    })
    .unwrap_or_else(|e| e)
}

/// `ftruncate`.
pub fn truncate(file: &File, len: u64) -> i64 {
    changed();
    with_store(|c, _| {
        let r = gate_code(c.truncate(file.id, len as i64));
        if r < 0 { Err(errno(r)) } else { Ok(0) }
    })
    .unwrap_or_else(|e| e)
}

/// `fsync`/`fdatasync` of a file.
pub fn sync(file: &File) -> i64 {
    with_store(|c, _| {
        let r = gate_code(c.sync(file.id));
        if r < 0 { Err(errno(r)) } else { Ok(0) }
    })
    .unwrap_or_else(|e| e)
}

/// Does `name` exist? (`Err` with an errno when the vfs cannot say.)
pub fn exists(name: &str) -> Result<bool, i64> {
    with_store(|c, buf| {
        let n = name_buf(buf, name, 0)?;
        match gate_code(c.exists(n)) {
            1 => Ok(true),
            0 => Ok(false),
            e => Err(errno(e)),
        }
    })
}

/// Size of the file called `name`.
pub fn size_of(name: &str) -> Result<u64, i64> {
    with_store(|c, buf| {
        let n = name_buf(buf, name, 0)?;
        let id = gate_code(c.open(n, false));
        if id < 0 {
            return Err(errno(id));
        }
        let s = gate_code(c.size(id));
        let _ = c.close(id);
        if s < 0 { Err(errno(s)) } else { Ok(s as u64) }
    })
}

/// `unlinkat`.
pub fn unlink(path: &str) -> i64 {
    changed();
    match resolve(path) {
        Path::Name(name) => with_store(|c, buf| {
            let n = name_buf(buf, &name, 0)?;
            let r = gate_code(c.delete(n));
            if r < 0 { Err(errno(r)) } else { Ok(0) }
        })
        .unwrap_or_else(|e| e),
        Path::Root => -EISDIR,
        Path::Null | Path::Random => -EACCES,
        Path::Builtin(_) => -EROFS,
        Path::Missing => -ENOENT,
    }
}

/// `mkdirat`: the root directory is the only one; it exists, as does any name in it
/// (no subdirectory can be made).
pub fn mkdir(path: &str) -> i64 {
    match resolve(path) {
        Path::Root | Path::Null | Path::Random | Path::Builtin(_) => -EEXIST,
        Path::Name(name) => match exists(&name) {
            Ok(true) => -EEXIST,
            Ok(false) => -EPERM,
            Err(e) => e,
        },
        Path::Missing => -ENOENT,
    }
}

/// `renameat`.
pub fn rename(from: &str, to: &str) -> i64 {
    changed();
    match (resolve(from), resolve(to)) {
        (Path::Name(a), Path::Name(b)) => with_store(|c, buf| {
            let na = name_buf(buf, &a, 0)?;
            let nb = name_buf(buf, &b, 256)?;
            let r = gate_code(c.rename(na, nb));
            if r < 0 { Err(errno(r)) } else { Ok(0) }
        })
        .unwrap_or_else(|e| e),
        (Path::Missing, _) | (_, Path::Missing) => -ENOENT,
        _ => -EBUSY,
    }
}

/// The root directory's files: `(name, size)`.
pub fn list() -> Result<Vec<(String, u64)>, i64> {
    with_store(|c, buf| {
        let full = gate_code(c.list(buf));
        if full < 0 {
            return Err(errno(full));
        }
        let n = (full as usize).min(TRANSFER);
        let mut text = alloc::vec![0u8; n];
        gate::bytes(buf)
            .map_err(|_| -EIO)?
            .copy_out(0, &mut text)
            .map_err(|_| -EIO)?;
        let text = String::from_utf8_lossy(&text);
        Ok(text
            .lines()
            .filter_map(|l| {
                let (name, size) = l.split_once('\t')?;
                Some((String::from(name), size.parse().ok()?))
            })
            .collect())
    })
}

/// Fills a `struct stat` for what `path` names.
pub fn stat_path(path: &str, st: &mut Stat) -> i64 {
    match resolve(path) {
        Path::Root => {
            *st = dir_stat();
            0
        }
        Path::Null | Path::Random => {
            *st = char_stat();
            0
        }
        Path::Missing => -ENOENT,
        Path::Builtin(bytes) => {
            *st = builtin_stat(bytes);
            0
        }
        Path::Name(name) => match size_of(&name) {
            Ok(size) => {
                *st = file_stat(size);
                0
            }
            Err(e) if e == -ENOENT && builtin::default_for(&name).is_some() => {
                *st = builtin_stat(builtin::default_for(&name).expect("just checked"));
                0
            }
            Err(e) => e,
        },
    }
}

/// A built-in file: read-only, its size.
pub fn builtin_stat(bytes: &[u8]) -> Stat {
    let mut st = file_stat(bytes.len() as u64);
    st.st_mode = S_IFREG | 0o444;
    st
}

fn times(st: &mut Stat) {
    let now = crate::clock::realtime_ns();
    st.st_atime = (now / 1_000_000_000) as i64;
    st.st_mtime = st.st_atime;
    st.st_ctime = st.st_atime;
}

pub fn file_stat(size: u64) -> Stat {
    let mut st = Stat {
        st_dev: 1,
        st_ino: 2,
        st_nlink: 1,
        st_mode: S_IFREG | 0o644,
        st_size: size as i64,
        st_blksize: 4096,
        st_blocks: size.div_ceil(512) as i64,
        ..Stat::default()
    };
    times(&mut st);
    st
}

pub fn dir_stat() -> Stat {
    let mut st = Stat {
        st_dev: 1,
        st_ino: 1,
        st_nlink: 2,
        st_mode: S_IFDIR | 0o755,
        st_blksize: 4096,
        ..Stat::default()
    };
    times(&mut st);
    st
}

pub fn char_stat() -> Stat {
    Stat {
        st_dev: 2,
        st_ino: 3,
        st_nlink: 1,
        st_mode: S_IFCHR | 0o666,
        st_blksize: 4096,
        ..Stat::default()
    }
}

/// `getdents64` on the root directory: fills `out` (`len` bytes) with the entries
/// after `dir.pos`; the bytes written (0 at the end).
pub fn getdents(dir: &mut Dir, out: *mut u8, len: usize) -> i64 {
    let entries = match list() {
        Ok(e) => e,
        Err(e) => return e,
    };
    let mut written = 0usize;
    let all = [(String::from("."), 0u64), (String::from(".."), 0)]
        .into_iter()
        .chain(entries);
    for (i, (name, _)) in all.enumerate().skip(dir.pos) {
        let (name, dtype) = match name.strip_suffix('/') {
            Some(d) => (String::from(d), DT_DIR),
            None if i < 2 => (name, DT_DIR),
            None => (name, DT_REG),
        };
        let reclen = (DIRENT64_HEADER + name.len() + 1).next_multiple_of(8);
        if written + reclen > len {
            if written == 0 {
                return -EINVAL;
            }
            break;
        }
        let mut rec = alloc::vec![0u8; reclen];
        rec[0..8].copy_from_slice(&(i as u64 + 10).to_le_bytes());
        rec[8..16].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
        rec[18] = dtype;
        rec[19..19 + name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: musl passes a buffer of `len` bytes; `written + reclen <= len`.
        unsafe { core::ptr::copy_nonoverlapping(rec.as_ptr(), out.add(written), reclen) };
        written += reclen;
        dir.pos = i + 1;
    }
    written as i64
}
