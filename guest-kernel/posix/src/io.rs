//! Reads, writes and the other calls on a descriptor, dispatched on its kind.

use alloc::vec::Vec;

use crate::fd::{self, Kind};
use crate::files;
use crate::linux::*;
use crate::pipe;
use crate::socket;

/// `read(fd, buf, len)` and `pread64` (`at` = `Some(offset)`).
pub fn read(fd: i64, buf: *mut u8, len: usize, at: Option<u64>) -> i64 {
    if buf.is_null() && len > 0 {
        return -EFAULT;
    }
    let desc = match fd::get(fd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    // SAFETY: musl passes the caller's buffer of `len` bytes.
    let dst = unsafe { core::slice::from_raw_parts_mut(buf, len) };
    let mut open = desc.borrow_mut();
    if open.flags & O_ACCMODE == O_WRONLY {
        return -EBADF;
    }
    let nonblock = open.nonblocking();
    match &mut open.kind {
        Kind::Console { output: false } | Kind::Null => 0,
        Kind::Console { output: true } => -EBADF,
        Kind::Random => {
            crate::process::fill_random(dst);
            len as i64
        }
        Kind::File(f) => {
            let offset = at.unwrap_or(f.offset);
            let n = files::read_at(f, offset, buf, len);
            if n > 0 && at.is_none() {
                f.offset += n as u64;
            }
            n
        }
        Kind::Builtin(b) => {
            let n = b.read_at(at.unwrap_or(b.offset), dst);
            if at.is_none() {
                b.offset += n as u64;
            }
            n
        }
        Kind::Dir(_) => -EISDIR,
        // A socketpair end reads its `rx` pipe.
        Kind::Pipe(p) | Kind::Pair { rx: p, .. } => {
            if at.is_some() {
                return -ESPIPE;
            }
            let p = PipeRef(p as *const pipe::PipeEnd);
            drop(open);
            // SAFETY: the description is kept alive by `desc`; the borrow was
            // released so other threads can use the pipe while this one waits.
            unsafe { &*p.0 }.read(dst, nonblock)
        }
        Kind::EventFd(count) => eventfd_read(count, dst, nonblock),
        Kind::Socket(_) => {
            if at.is_some() {
                return -ESPIPE;
            }
            drop(open);
            socket::recv(fd, dst, 0)
        }
        Kind::Epoll(_) => -EINVAL,
    }
}

struct PipeRef(*const pipe::PipeEnd);

/// `write(fd, buf, len)` and `pwrite64`.
pub fn write(fd: i64, buf: *const u8, len: usize, at: Option<u64>) -> i64 {
    if buf.is_null() && len > 0 {
        return -EFAULT;
    }
    let desc = match fd::get(fd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    // SAFETY: musl passes the caller's buffer of `len` bytes.
    let src = unsafe { core::slice::from_raw_parts(buf, len) };
    let mut open = desc.borrow_mut();
    if open.flags & O_ACCMODE == O_RDONLY && !matches!(open.kind, Kind::Console { .. }) {
        return -EBADF;
    }
    let nonblock = open.nonblocking();
    match &mut open.kind {
        Kind::Console { .. } => {
            flexos_kernel::console::write_bytes(src);
            len as i64
        }
        Kind::Null | Kind::Random => len as i64,
        Kind::File(f) => {
            let offset = match at {
                Some(o) => o,
                None if f.append => match files::size(f) {
                    s if s < 0 => return s,
                    s => s as u64,
                },
                None => f.offset,
            };
            let n = files::write_at(f, offset, buf, len);
            if n > 0 && at.is_none() {
                f.offset = offset + n as u64;
            }
            // A log (a file opened to append) is written through: each line is on the
            // disk when the write returns, since a VM can be stopped at any moment and
            // nothing else would flush it (Nginx's access log never calls fsync).
            if n > 0 && f.append {
                let r = files::sync(f);
                if r < 0 {
                    return r;
                }
            }
            n
        }
        Kind::Builtin(_) => -EBADF,
        Kind::Dir(_) => -EISDIR,
        // A socketpair end writes its `tx` pipe.
        Kind::Pipe(p) | Kind::Pair { tx: p, .. } => {
            if at.is_some() {
                return -ESPIPE;
            }
            let p = PipeRef(p as *const pipe::PipeEnd);
            drop(open);
            // SAFETY: as in `read`.
            unsafe { &*p.0 }.write(src, nonblock)
        }
        Kind::EventFd(count) => {
            let Ok(add) = <[u8; 8]>::try_from(src.get(..8).unwrap_or(&[])) else {
                return -EINVAL;
            };
            let add = u64::from_ne_bytes(add);
            match count.checked_add(add).filter(|&c| c < u64::MAX) {
                Some(c) if add != u64::MAX => {
                    *count = c;
                    8
                }
                Some(_) => -EINVAL,
                None => -EAGAIN,
            }
        }
        Kind::Socket(_) => {
            if at.is_some() {
                return -ESPIPE;
            }
            drop(open);
            socket::send(fd, src, MSG_NOSIGNAL)
        }
        Kind::Epoll(_) => -EINVAL,
    }
}

fn iovecs(iov: *const Iovec, count: i64) -> Result<Vec<Iovec>, i64> {
    if !(0..=1024).contains(&count) {
        return Err(-EINVAL);
    }
    if iov.is_null() && count > 0 {
        return Err(-EFAULT);
    }
    // SAFETY: musl passes `count` iovecs.
    Ok((0..count as usize)
        .map(|i| unsafe { iov.add(i).read() })
        .collect())
}

/// `readv(fd, iov, count)`: buffer by buffer until one is not filled.
pub fn readv(fd: i64, iov: *const Iovec, count: i64) -> i64 {
    let list = match iovecs(iov, count) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let mut total = 0i64;
    for v in list {
        if v.len == 0 {
            continue;
        }
        let n = read(fd, v.base, v.len, None);
        if n < 0 {
            return if total > 0 { total } else { n };
        }
        total += n;
        if (n as usize) < v.len {
            break;
        }
    }
    total
}

/// `writev(fd, iov, count)`: gathered into one write, so a socket sends it at once.
pub fn writev(fd: i64, iov: *const Iovec, count: i64) -> i64 {
    let list = match iovecs(iov, count) {
        Ok(l) => l,
        Err(e) => return e,
    };
    if list.len() == 1 {
        return write(fd, list[0].base, list[0].len, None);
    }
    let mut all = Vec::new();
    for v in &list {
        if v.len > 0 {
            // SAFETY: each iovec describes a buffer of the caller.
            all.extend_from_slice(unsafe { core::slice::from_raw_parts(v.base, v.len) });
        }
    }
    write(fd, all.as_ptr(), all.len(), None)
}

/// `lseek(fd, offset, whence)`.
pub fn lseek(fd: i64, offset: i64, whence: u64) -> i64 {
    let desc = match fd::get(fd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let mut open = desc.borrow_mut();
    match &mut open.kind {
        Kind::File(f) => {
            let n = seek(f.offset, || files::size(f), offset, whence);
            f.offset = u64::try_from(n).unwrap_or(f.offset);
            n
        }
        Kind::Builtin(b) => {
            let n = seek(b.offset, || b.bytes.len() as i64, offset, whence);
            b.offset = u64::try_from(n).unwrap_or(b.offset);
            n
        }
        Kind::Dir(d) if whence == SEEK_SET && offset == 0 => {
            d.pos = 0;
            0
        }
        Kind::Null | Kind::Random => 0,
        _ => -ESPIPE,
    }
}

/// The offset `lseek` moves `cur` to, with `size` asked only for SEEK_END (it may be a
/// gate call; negative is an error); or an error.
fn seek(cur: u64, size: impl FnOnce() -> i64, offset: i64, whence: u64) -> i64 {
    let base = match whence {
        SEEK_SET => 0,
        SEEK_CUR => cur as i64,
        SEEK_END => match size() {
            s if s < 0 => return s,
            s => s,
        },
        _ => return -EINVAL,
    };
    match base.checked_add(offset) {
        Some(n) if n >= 0 => n,
        _ => -EINVAL,
    }
}

/// `fstat(fd, st)`.
pub fn fstat(fd: i64, st: *mut Stat) -> i64 {
    if st.is_null() {
        return -EFAULT;
    }
    let desc = match fd::get(fd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let open = desc.borrow();
    let s = match &open.kind {
        Kind::File(f) => match files::size(f) {
            n if n < 0 => return n,
            n => files::file_stat(n as u64),
        },
        Kind::Builtin(b) => files::builtin_stat(b.bytes),
        Kind::Dir(_) => files::dir_stat(),
        Kind::Console { .. } | Kind::Null | Kind::Random => files::char_stat(),
        Kind::Socket(_) => Stat {
            st_mode: S_IFSOCK | 0o777,
            st_blksize: 4096,
            ..Stat::default()
        },
        Kind::Pipe(_) | Kind::Pair { .. } | Kind::EventFd(_) => Stat {
            st_mode: S_IFIFO | 0o600,
            st_blksize: 4096,
            ..Stat::default()
        },
        Kind::Epoll(_) => Stat::default(),
    };
    // SAFETY: musl passes the caller's `struct stat`.
    unsafe { st.write(s) };
    0
}

/// `fsync`/`fdatasync`.
pub fn fsync(fd: i64) -> i64 {
    let desc = match fd::get(fd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let open = desc.borrow();
    match &open.kind {
        Kind::File(f) => files::sync(f),
        // A rename or delete is durable when it returns: the directory has nothing
        // waiting.
        Kind::Dir(_) | Kind::Builtin(_) => 0,
        Kind::Console { .. } | Kind::Null | Kind::Random => -EINVAL,
        _ => -EINVAL,
    }
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: i64, len: i64) -> i64 {
    if len < 0 {
        return -EINVAL;
    }
    let desc = match fd::get(fd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let open = desc.borrow();
    match &open.kind {
        Kind::File(f) if open.flags & O_ACCMODE != O_RDONLY => files::truncate(f, len as u64),
        Kind::File(_) => -EBADF,
        _ => -EINVAL,
    }
}

/// `getdents64(fd, buf, len)`.
pub fn getdents(fd: i64, buf: *mut u8, len: usize) -> i64 {
    let desc = match fd::get(fd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let mut open = desc.borrow_mut();
    match &mut open.kind {
        Kind::Dir(d) => files::getdents(d, buf, len),
        _ => -ENOTDIR,
    }
}

/// `fcntl(fd, cmd, arg)`.
pub fn fcntl(fd: i64, cmd: u64, arg: u64) -> i64 {
    let desc = match fd::get(fd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    match cmd {
        F_GETFD => match fd::cloexec(fd) {
            Ok(c) => i64::from(c),
            Err(e) => e,
        },
        F_SETFD => fd::set_cloexec(fd, arg & 1 != 0),
        F_GETFL => desc.borrow().flags as i64,
        F_SETFL => {
            let mut open = desc.borrow_mut();
            let keep = open.flags & O_ACCMODE;
            open.flags = keep | (arg & (O_NONBLOCK | O_APPEND));
            if let Kind::File(f) = &mut open.kind {
                f.append = arg & O_APPEND != 0;
            }
            0
        }
        F_DUPFD | F_DUPFD_CLOEXEC => fd::install_from(desc, arg as usize, cmd == F_DUPFD_CLOEXEC),
        // One process: every lock is granted.
        F_SETLK | F_SETLKW => 0,
        F_GETLK => 0,
        _ => -EINVAL,
    }
}

/// `ioctl(fd, request, arg)`: non-blocking mode and bytes ready; no terminal.
pub fn ioctl(fd: i64, request: u64, arg: u64) -> i64 {
    let desc = match fd::get(fd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    match request {
        FIONBIO => {
            if arg == 0 {
                return -EFAULT;
            }
            // SAFETY: FIONBIO's argument points at an int.
            let on = unsafe { (arg as *const i32).read() } != 0;
            let mut open = desc.borrow_mut();
            if on {
                open.flags |= O_NONBLOCK;
            } else {
                open.flags &= !O_NONBLOCK;
            }
            0
        }
        FIONREAD => {
            if arg == 0 {
                return -EFAULT;
            }
            let n = match &mut desc.borrow_mut().kind {
                Kind::Socket(s) => s.unread(),
                Kind::Pipe(p) if !p.write => p.unread(),
                Kind::Pair { rx, .. } => rx.unread(),
                _ => return -ENOTTY,
            };
            // SAFETY: FIONREAD's argument points at an int.
            unsafe { (arg as *mut i32).write(i32::try_from(n).unwrap_or(i32::MAX)) };
            0
        }
        TCGETS | TIOCGWINSZ => -ENOTTY,
        _ => -ENOTTY,
    }
}

/// An eventfd's read: the counter (8 bytes), which goes to 0; at 0, `EAGAIN`, or for
/// a blocking descriptor `EINTR` (the writer would be another thread of the program,
/// which runs only when this one blocks: the caller's retry lets it).
fn eventfd_read(count: &mut u64, dst: &mut [u8], nonblock: bool) -> i64 {
    if dst.len() < 8 {
        return -EINVAL;
    }
    if *count == 0 {
        return if nonblock { -EAGAIN } else { -EINTR };
    }
    dst[..8].copy_from_slice(&count.to_ne_bytes());
    *count = 0;
    8
}

/// `eventfd2(initial, flags)` (and `eventfd`).
pub fn eventfd(initial: u64, flags: u64) -> i64 {
    fd::install(
        Kind::EventFd(initial),
        O_RDWR | (flags & O_NONBLOCK),
        flags & O_CLOEXEC != 0,
    )
}

/// `socketpair(AF_UNIX, SOCK_STREAM, 0, fds)`: two ends joined by two pipes.
pub fn socketpair(domain: u64, ty: u64, fds: *mut i32) -> i64 {
    if domain != AF_UNIX {
        return -EAFNOSUPPORT;
    }
    if ty & 0xf != SOCK_STREAM {
        return -EOPNOTSUPP;
    }
    if fds.is_null() {
        return -EFAULT;
    }
    let (a_rx, b_tx) = pipe::new();
    let (b_rx, a_tx) = pipe::new();
    let status = if ty & SOCK_NONBLOCK != 0 {
        O_NONBLOCK
    } else {
        0
    };
    let cloexec = ty & SOCK_CLOEXEC != 0;
    let a = fd::install(Kind::Pair { rx: a_rx, tx: a_tx }, O_RDWR | status, cloexec);
    if a < 0 {
        b_rx.close();
        b_tx.close();
        return a;
    }
    let b = fd::install(Kind::Pair { rx: b_rx, tx: b_tx }, O_RDWR | status, cloexec);
    if b < 0 {
        fd::close(a);
        return b;
    }
    // SAFETY: the caller's array of two ints.
    unsafe {
        fds.write(a as i32);
        fds.add(1).write(b as i32);
    }
    0
}

/// `pipe2(fds, flags)`.
pub fn pipe2(fds: *mut i32, flags: u64) -> i64 {
    if fds.is_null() {
        return -EFAULT;
    }
    let (r, w) = pipe::new();
    let status = flags & O_NONBLOCK;
    let cloexec = flags & O_CLOEXEC != 0;
    let rfd = fd::install(Kind::Pipe(r), O_RDONLY | status, cloexec);
    if rfd < 0 {
        w.close();
        return rfd;
    }
    let wfd = fd::install(Kind::Pipe(w), O_WRONLY | status, cloexec);
    if wfd < 0 {
        fd::close(rfd);
        return wfd;
    }
    // SAFETY: musl passes an array of two ints.
    unsafe {
        fds.write(rfd as i32);
        fds.add(1).write(wfd as i32);
    }
    0
}
