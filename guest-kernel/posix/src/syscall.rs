//! The entry points musl calls instead of the `syscall` instruction (its
//! `syscall_arch.h` and thread glue are replaced at build time; see
//! `guest-kernel/posix/musl/`), and the dispatch of system call numbers.
//!
//! A call the layer does not implement returns `-ENOSYS` and is logged once, by name.

use alloc::collections::BTreeSet;
use core::cell::RefCell;

use crate::linux::*;
use crate::{Global, clock, epoll, fd, files, io, mem, nr_names, process, sched, socket};

static UNIMPLEMENTED: Global<RefCell<BTreeSet<u64>>> = Global::new(RefCell::new(BTreeSet::new()));

/// The distinct system calls the program made, for the porting report
/// (`posix.syscalls` prints them at exit).
static USED: Global<RefCell<BTreeSet<u64>>> = Global::new(RefCell::new(BTreeSet::new()));

/// Prints the distinct system calls the program made, by name, in number order: one
/// line, `posix: N system calls used: read write ...` (guest argument
/// `posix.syscalls=on`; the figure Table 1 of FlexOS reports).
pub fn report_used() {
    let used = USED.get().borrow();
    let mut line = alloc::format!("posix: {} system calls used:", used.len());
    for &nr in used.iter() {
        line.push(' ');
        match nr_names::name(nr) {
            Some(name) => line.push_str(name),
            None => line.push_str(&alloc::format!("{nr}")),
        }
    }
    flexos_kernel::println!("{line}");
}

fn nosys(nr: u64) -> i64 {
    if UNIMPLEMENTED.get().borrow_mut().insert(nr) {
        match nr_names::name(nr) {
            Some(name) => {
                flexos_kernel::println!("posix: {name} ({nr}) is not implemented: ENOSYS")
            }
            None => flexos_kernel::println!("posix: system call {nr} is not implemented: ENOSYS"),
        }
    }
    -ENOSYS
}

/// musl's every system call.
///
/// # Safety
///
/// Called by musl with the arguments of system call `nr`; pointers among them point
/// at the program's memory as the call's contract says.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __flexos_syscall(
    nr: i64,
    a: i64,
    b: i64,
    c: i64,
    d: i64,
    e: i64,
    f: i64,
) -> i64 {
    let nr = nr as u64;
    USED.get().borrow_mut().insert(nr);
    let (ua, ub, uc, ud) = (a as u64, b as u64, c as u64, d as u64);
    match nr {
        // Files and descriptors.
        0 => io::read(a, b as *mut u8, c as usize, None),
        1 => io::write(a, b as *const u8, c as usize, None),
        17 => io::read(a, b as *mut u8, c as usize, Some(ud)),
        18 => io::write(a, b as *const u8, c as usize, Some(ud)),
        19 => io::readv(a, b as *const Iovec, c),
        20 => io::writev(a, b as *const Iovec, c),
        2 => path_then(a, |p| files::open(&p, ub)),
        257 => at_path(a, b, |p| files::open(&p, uc)),
        3 => fd::close(a),
        5 => io::fstat(a, b as *mut Stat),
        4 | 6 => path_then(a, |p| {
            let mut st = Stat::default();
            let r = files::stat_path(&p, &mut st);
            write_stat(b as *mut Stat, st, r)
        }),
        262 => {
            if ud & AT_EMPTY_PATH != 0 && b != 0 && first_byte(b as *const u8) == 0 {
                return io::fstat(a, c as *mut Stat);
            }
            at_path(a, b, |p| {
                let mut st = Stat::default();
                let r = files::stat_path(&p, &mut st);
                write_stat(c as *mut Stat, st, r)
            })
        }
        8 => io::lseek(a, b, uc),
        72 => io::fcntl(a, ub, uc),
        16 => io::ioctl(a, ub, uc),
        74 | 75 => io::fsync(a),
        77 => io::ftruncate(a, b),
        217 => io::getdents(a, b as *mut u8, c as usize),
        32 => match fd::get(a) {
            Ok(desc) => fd::install_from(desc, 0, false),
            Err(e) => e,
        },
        33 => dup2(a, b, false),
        292 => {
            if a == b {
                return -EINVAL;
            }
            dup2(a, b, uc & O_CLOEXEC != 0)
        }
        22 => io::pipe2(a as *mut i32, 0),
        293 => io::pipe2(a as *mut i32, ub),
        21 => path_then(a, |p| access(&p)),
        269 | 439 => at_path(a, b, |p| access(&p)),
        87 => path_then(a, |p| files::unlink(&p)),
        263 => {
            if uc & AT_REMOVEDIR != 0 {
                return -EPERM;
            }
            at_path(a, b, |p| files::unlink(&p))
        }
        82 => path_then(a, |from| path_then(b, |to| files::rename(&from, &to))),
        264 | 316 => at_path(a, b, |from| at_path(c, d, |to| files::rename(&from, &to))),
        83 => path_then(a, |p| files::mkdir(&p)),
        258 => at_path(a, b, |p| files::mkdir(&p)),
        84 => -EPERM,
        79 => getcwd(a as *mut u8, b as usize),
        80 => path_then(a, |p| match files::resolve(&p) {
            files::Path::Root => 0,
            files::Path::Missing => -ENOENT,
            _ => -ENOTDIR,
        }),
        81 => 0,
        95 => 0o022,
        89 | 267 => -EINVAL,
        90 | 91 | 92 | 93 | 94 | 260 | 268 => 0,
        137 | 138 => statfs(b as *mut u8),
        // Memory.
        9 => mem::mmap(a as usize, b as usize, uc, ud, e, f as u64),
        11 => mem::munmap(a as usize, b as usize),
        25 => mem::mremap(a as usize, b as usize, c as usize, ud),
        12 => 0,
        10 => 0,
        28 => madvise(a as usize, b as usize, uc),
        // Time.
        228 => clock::clock_gettime(ua, b as *mut Timespec),
        229 => clock::clock_getres(ua, b as *mut Timespec),
        96 => clock::gettimeofday(a as *mut Timeval),
        201 => {
            let now = (clock::realtime_ns() / 1_000_000_000) as i64;
            if a != 0 {
                // SAFETY: time(2)'s argument points at a time_t.
                unsafe { (a as *mut i64).write(now) };
            }
            now
        }
        35 => clock::clock_nanosleep(CLOCK_MONOTONIC, 0, a as *const Timespec),
        230 => clock::clock_nanosleep(ua, ub, c as *const Timespec),
        // Threads.
        158 => match ua {
            ARCH_SET_FS => {
                sched::set_fs(ub);
                0
            }
            ARCH_GET_FS => {
                if b == 0 {
                    return -EFAULT;
                }
                // SAFETY: ARCH_GET_FS's argument points at an unsigned long.
                unsafe { (b as *mut u64).write(sched::fs()) };
                0
            }
            _ => -EINVAL,
        },
        205 => {
            sched::set_fs(ua);
            0
        }
        218 => i64::from(sched::current_tid()),
        186 => i64::from(sched::current_tid()),
        202 => futex(
            a as usize,
            ub,
            c as u32,
            d as *const Timespec,
            e as usize,
            f as u32,
        ),
        24 => {
            sched::yield_now();
            0
        }
        273 | 274 => 0,
        60 => sched::exit_thread(a as i32),
        231 => process::exit_group(a as i32),
        203 => 0,
        204 => process::sched_getaffinity(b as usize, c as *mut u8),
        // Sockets.
        41 => socket::socket(ua, ub, uc),
        49 => socket::bind(a, b as *const u8, uc),
        50 => socket::listen(a),
        43 => socket::accept(a, b as *mut u8, c as *mut u32, 0),
        288 => socket::accept(a, b as *mut u8, c as *mut u32, ud),
        42 => socket::connect(a),
        44 => {
            // sendto(fd, buf, len, flags, addr, addrlen): the address is ignored on a
            // connected stream.
            if b == 0 && c > 0 {
                return -EFAULT;
            }
            // SAFETY: musl passes the caller's buffer of `len` bytes.
            let src = unsafe { core::slice::from_raw_parts(b as *const u8, c as usize) };
            socket::send(a, src, ud)
        }
        45 => {
            if b == 0 && c > 0 {
                return -EFAULT;
            }
            // SAFETY: as above, for the destination.
            let dst = unsafe { core::slice::from_raw_parts_mut(b as *mut u8, c as usize) };
            socket::recv(a, dst, ud)
        }
        46 => sendmsg(a, b as *const u8, uc),
        47 => recvmsg(a, b as *mut u8, uc),
        48 => match fd::get(a) {
            Ok(_) => 0,
            Err(e) => e,
        },
        51 => socket::getsockname(a, b as *mut u8, c as *mut u32),
        52 => socket::getpeername(a, b as *mut u8, c as *mut u32),
        54 => socket::setsockopt(a, ub, uc),
        55 => socket::getsockopt(a, ub, uc, d as *mut u8, e as *mut u32),
        53 => io::socketpair(ua, ub, d as *mut i32),
        284 => io::eventfd(ua, 0),
        290 => io::eventfd(ua, ub),
        // epoll and poll.
        213 | 291 => epoll::create(if nr == 291 { ua } else { 0 }),
        233 => epoll::ctl(a, ub, c, d as *const EpollEvent),
        232 | 281 => epoll::wait(a, b as *mut EpollEvent, c, d),
        7 => epoll::poll(a as *mut Pollfd, b as usize, c),
        271 => {
            let timeout = if c == 0 {
                -1
            } else {
                // SAFETY: ppoll's timeout points at a timespec.
                let ts = unsafe { (c as *const Timespec).read() };
                clock::from_timespec(&ts).map_or(-1, |ns| (ns / 1_000_000) as i64)
            };
            epoll::poll(a as *mut Pollfd, b as usize, timeout)
        }
        // Process.
        39 => process::PID,
        110 => 0,
        102 | 104 | 107 | 108 => 0,
        105 | 106 | 113 | 114 | 117 | 119 => 0,
        118 | 120 => {
            for p in [a, b, c] {
                if p != 0 {
                    // SAFETY: the three arguments point at uid_t/gid_t.
                    unsafe { (p as *mut u32).write(0) };
                }
            }
            0
        }
        112 => process::PID,
        121 | 124 => 0,
        63 => process::uname(a as *mut u8),
        97 => process::prlimit(0, ua, core::ptr::null(), b as *mut Rlimit),
        160 => process::prlimit(0, ua, b as *const Rlimit, core::ptr::null_mut()),
        302 => process::prlimit(a, ub, c as *const Rlimit, d as *mut Rlimit),
        98 => process::getrusage(b as *mut Rusage),
        99 => process::sysinfo(a as *mut Sysinfo),
        157 => process::prctl(ua, ub),
        318 => process::getrandom(a as *mut u8, b as usize),
        13 => process::sigaction(ua, b as *const [u64; 4], c as *mut [u64; 4]),
        14 => process::sigprocmask(ua, b as *const u64, c as *mut u64),
        131 => {
            if b != 0 {
                // SAFETY: sigaltstack's old-stack argument: a stack_t (24 bytes);
                // SS_DISABLE (2) says there is none.
                unsafe {
                    core::ptr::write_bytes(b as *mut u8, 0, 24);
                    ((b + 8) as *mut i32).write(2);
                }
            }
            0
        }
        62 => process::kill(a, ub),
        200 => process::kill(a, ub),
        234 => process::kill(b, uc),
        57 | 58 | 56 | 59 | 61 | 247 | 322 => process::no_processes(),
        // One vCPU: every thread already sees every store; nothing to register.
        324 => 0,
        // Interval timers are accepted and never fire (no asynchronous signals); the
        // old value reads as disarmed.
        38 => {
            if c != 0 {
                // SAFETY: setitimer's old value: a struct itimerval (4 words).
                unsafe { core::ptr::write_bytes(c as *mut u8, 0, 32) };
            }
            0
        }
        36 => {
            if b != 0 {
                // SAFETY: getitimer's value: a struct itimerval.
                unsafe { core::ptr::write_bytes(b as *mut u8, 0, 32) };
            }
            0
        }
        15 => nosys(nr),
        _ => nosys(nr),
    }
}

fn first_byte(p: *const u8) -> u8 {
    // SAFETY: a path argument: a NUL-terminated string (at least one byte).
    unsafe { p.read() }
}

fn path_then(ptr: i64, f: impl FnOnce(alloc::string::String) -> i64) -> i64 {
    match files::c_path(ptr as *const u8) {
        Ok(p) => f(p),
        Err(e) => e,
    }
}

/// A path relative to `dirfd`: the current directory and the root directory are the
/// same (the only) directory, so any directory descriptor or AT_FDCWD works.
fn at_path(dirfd: i64, ptr: i64, f: impl FnOnce(alloc::string::String) -> i64) -> i64 {
    if dirfd != AT_FDCWD {
        match fd::get(dirfd) {
            Ok(d) => {
                if !matches!(d.borrow().kind, fd::Kind::Dir(_)) {
                    return -ENOTDIR;
                }
            }
            Err(e) => return e,
        }
    }
    path_then(ptr, f)
}

fn write_stat(out: *mut Stat, st: Stat, r: i64) -> i64 {
    if r < 0 {
        return r;
    }
    if out.is_null() {
        return -EFAULT;
    }
    // SAFETY: musl passes the caller's `struct stat`.
    unsafe { out.write(st) };
    0
}

fn access(path: &str) -> i64 {
    match files::resolve(path) {
        files::Path::Root | files::Path::Null | files::Path::Random | files::Path::Builtin(_) => 0,
        files::Path::Missing => -ENOENT,
        files::Path::Name(n) => match files::exists(&n) {
            Ok(true) => 0,
            Ok(false) if crate::builtin::default_for(&n).is_some() => 0,
            Ok(false) => -ENOENT,
            Err(e) => e,
        },
    }
}

fn dup2(old: i64, new: i64, cloexec: bool) -> i64 {
    if old == new {
        return match fd::get(old) {
            Ok(_) => new,
            Err(e) => e,
        };
    }
    fd::dup_to(old, new, cloexec)
}

fn getcwd(buf: *mut u8, size: usize) -> i64 {
    if buf.is_null() {
        return -EFAULT;
    }
    if size < 2 {
        return -ERANGE;
    }
    // SAFETY: musl passes a buffer of `size` bytes.
    unsafe {
        buf.write(b'/');
        buf.add(1).write(0);
    }
    2
}

fn statfs(out: *mut u8) -> i64 {
    if out.is_null() {
        return -EFAULT;
    }
    // SAFETY: musl passes a `struct statfs` (120 bytes on x86_64).
    unsafe { core::ptr::write_bytes(out, 0, 120) };
    0
}

fn madvise(addr: usize, len: usize, advice: u64) -> i64 {
    const MADV_DONTNEED: u64 = 4;
    if advice == MADV_DONTNEED && len > 0 {
        // Anonymous memory reads back as zeros after DONTNEED.
        // SAFETY: musl only advises about memory it mapped.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len) };
    }
    0
}

/// `futex(addr, op, val, timeout, addr2, val3)`.
fn futex(addr: usize, op: u64, val: u32, timeout: *const Timespec, addr2: usize, val3: u32) -> i64 {
    if addr == 0 || !addr.is_multiple_of(4) {
        return -EINVAL;
    }
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    match op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if op & 0x7f == FUTEX_WAIT_BITSET {
                val3
            } else {
                u32::MAX
            };
            if bitset == 0 {
                return -EINVAL;
            }
            let deadline = if timeout.is_null() {
                None
            } else {
                // SAFETY: the caller's timespec.
                let ts = unsafe { timeout.read() };
                // FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's absolute.
                let absolute = op & 0x7f == FUTEX_WAIT_BITSET;
                let clock = if realtime {
                    CLOCK_REALTIME
                } else {
                    CLOCK_MONOTONIC
                };
                match clock::deadline(clock, &ts, absolute) {
                    Some(d) => Some(d),
                    None => return -EINVAL,
                }
            };
            sched::futex_wait(addr, val, bitset, deadline)
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bitset = if op & 0x7f == FUTEX_WAKE_BITSET {
                val3
            } else {
                u32::MAX
            };
            sched::futex_wake(addr, val, bitset)
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            if op & 0x7f == FUTEX_CMP_REQUEUE {
                // SAFETY: a futex word of the program.
                if unsafe { (addr as *const u32).read_volatile() } != val3 {
                    return -EAGAIN;
                }
            }
            sched::futex_requeue(addr, val, addr2, timeout as usize as u32)
        }
        _ => -ENOSYS,
    }
}

/// `struct msghdr` (x86_64).
#[repr(C)]
struct Msghdr {
    name: *mut u8,
    namelen: u32,
    iov: *const Iovec,
    iovlen: usize,
    control: *mut u8,
    controllen: usize,
    flags: i32,
}

fn sendmsg(fd: i64, msg: *const u8, flags: u64) -> i64 {
    if msg.is_null() {
        return -EFAULT;
    }
    // SAFETY: musl passes a `struct msghdr`.
    let m = unsafe { (msg as *const Msghdr).read() };
    if m.iovlen > 1024 {
        return -EINVAL;
    }
    let mut all = alloc::vec::Vec::new();
    for i in 0..m.iovlen {
        // SAFETY: `iovlen` iovecs describing the caller's buffers.
        let v = unsafe { m.iov.add(i).read() };
        if v.len > 0 {
            // SAFETY: as above.
            all.extend_from_slice(unsafe { core::slice::from_raw_parts(v.base, v.len) });
        }
    }
    socket::send(fd, &all, flags)
}

fn recvmsg(fd: i64, msg: *mut u8, flags: u64) -> i64 {
    if msg.is_null() {
        return -EFAULT;
    }
    // SAFETY: musl passes a `struct msghdr`.
    let m = unsafe { (msg as *const Msghdr).read() };
    if m.iovlen == 0 {
        return 0;
    }
    // SAFETY: the first iovec describes a buffer of the caller.
    let v = unsafe { m.iov.read() };
    // SAFETY: as above.
    let dst = unsafe { core::slice::from_raw_parts_mut(v.base, v.len) };
    let n = socket::recv(fd, dst, flags);
    if n >= 0 {
        // SAFETY: the caller's msghdr: no address, no control data, no flags.
        unsafe {
            let mm = msg as *mut Msghdr;
            (*mm).namelen = 0;
            (*mm).controllen = 0;
            (*mm).flags = 0;
        }
    }
    n
}

/// musl's `__clone` for `pthread_create` (see [`sched::spawn`]).
///
/// # Safety
///
/// musl's contract for `__clone`: `stack` is the top of the new thread's stack, `tls`
/// its thread descriptor, `ptid`/`ctid` point into it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __flexos_clone(
    func: extern "C" fn(*mut u8) -> i32,
    stack: *mut u8,
    flags: i32,
    arg: *mut u8,
    ptid: *mut i32,
    tls: *mut u8,
    ctid: *mut i32,
) -> i32 {
    let flags = flags as u32 as u64;
    // Threads only: a new process (no CLONE_VM) is a fork.
    if flags & CLONE_VM == 0 || flags & CLONE_THREAD == 0 {
        return -(ENOSYS as i32);
    }
    // SAFETY: forwarded from musl's contract, above.
    unsafe { sched::spawn(func, stack as usize, flags, arg, ptid, tls as u64, ctid) as i32 }
}

/// musl's `__unmapself`: a detached thread frees its own stack and exits.
#[unsafe(no_mangle)]
pub extern "C" fn __flexos_unmapself(base: *mut u8, size: usize) -> ! {
    sched::exit_and_free_stack(base as usize, size)
}
