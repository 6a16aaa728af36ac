//! The process as a C program sees it: one process (pid 1) of root, named by
//! `uname` as FlexOS, with generous limits; signals recorded and never delivered
//! asynchronously; randomness from RDRAND; and the end of the run.

use core::arch::x86_64::__cpuid;
use core::cell::RefCell;

use crate::linux::{
    EFAULT, EINVAL, ENOSYS, ESRCH, NSIG, RLIM_INFINITY, RLIMIT_NOFILE, RLIMIT_STACK, Rlimit,
    Rusage, SIGABRT, Sysinfo, Timeval, UTSNAME_FIELD,
};
use crate::{Global, sched};

/// The process id every process has here (and the main thread's id).
pub const PID: i64 = 1;
/// Most file descriptors (`RLIMIT_NOFILE`): what Redis asks for its 10,000 clients.
pub const MAX_FDS: u64 = 65_536;
/// How long the end of the program waits for its connections' FINs to be acknowledged.
const LINGER_NS: u64 = 1_000_000_000;
/// The stack limit musl sizes its default thread stacks from.
const STACK_LIMIT: u64 = 8 << 20;

/// Per-signal disposition (`struct k_sigaction`, 32 bytes: handler, flags, restorer,
/// mask) and the blocked mask: recorded for `rt_sigaction`/`rt_sigprocmask`, never
/// acted on.
struct Signals {
    actions: [[u64; 4]; NSIG as usize],
    mask: u64,
}

static SIGNALS: Global<RefCell<Signals>> = Global::new(RefCell::new(Signals {
    actions: [[0; 4]; NSIG as usize],
    mask: 0,
}));

/// Ends the whole program with `code` (`exit_group`): stdout is flushed by musl
/// before; the console's last line here.
pub fn exit_group(code: i32) -> ! {
    if flexos_kernel::Args::of_run().get("posix.syscalls") == Some("on") {
        crate::syscall::report_used();
    }
    // What the kernel does when a process ends: its descriptors close, and its
    // connections' FINs still reach the peers.
    crate::fd::close_all();
    crate::socket::linger(LINGER_NS);
    flexos_kernel::console::flush();
    let code = code & 0xff;
    if code > flexos_kernel::abi::EXIT_CODE_MAX as i32 {
        flexos_kernel::println!(
            "posix: the program exited with status {code}, which the monitor cannot pass on \
             (0..={}): exiting with {}",
            flexos_kernel::abi::EXIT_CODE_MAX,
            flexos_kernel::abi::EXIT_CODE_MAX
        );
        flexos_kernel::exit(flexos_kernel::abi::EXIT_CODE_MAX as i32);
    }
    flexos_kernel::exit(code)
}

/// `uname(buf)`.
pub fn uname(buf: *mut u8) -> i64 {
    if buf.is_null() {
        return -EFAULT;
    }
    let fields = [
        "FlexOS",
        "flexos",
        "0.1.0",
        "flexos-posix",
        "x86_64",
        "(none)",
    ];
    for (i, f) in fields.iter().enumerate() {
        let mut field = [0u8; UTSNAME_FIELD];
        field[..f.len()].copy_from_slice(f.as_bytes());
        // SAFETY: musl passes a `struct utsname`: six fields of 65 bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(
                field.as_ptr(),
                buf.add(i * UTSNAME_FIELD),
                UTSNAME_FIELD,
            )
        };
    }
    0
}

fn limit(resource: u64) -> Rlimit {
    match resource {
        RLIMIT_NOFILE => Rlimit {
            cur: MAX_FDS,
            max: MAX_FDS,
        },
        RLIMIT_STACK => Rlimit {
            cur: STACK_LIMIT,
            max: RLIM_INFINITY,
        },
        _ => Rlimit {
            cur: RLIM_INFINITY,
            max: RLIM_INFINITY,
        },
    }
}

/// `prlimit64(pid, resource, new, old)` (and `getrlimit`/`setrlimit`): limits are
/// fixed; a request within them succeeds and changes nothing.
pub fn prlimit(pid: i64, resource: u64, new: *const Rlimit, old: *mut Rlimit) -> i64 {
    if pid != 0 && pid != PID {
        return -ESRCH;
    }
    if resource > 15 {
        return -EINVAL;
    }
    let cur = limit(resource);
    if !new.is_null() {
        // SAFETY: musl passes the caller's `struct rlimit`.
        let want = unsafe { new.read() };
        if want.cur > want.max || want.max > cur.max {
            return -crate::linux::EPERM;
        }
    }
    if !old.is_null() {
        // SAFETY: as above.
        unsafe { old.write(cur) };
    }
    0
}

/// `sched_getaffinity(pid, size, mask)`: one CPU (a compartment has one vCPU).
pub fn sched_getaffinity(size: usize, mask: *mut u8) -> i64 {
    if size < 8 || mask.is_null() {
        return -EINVAL;
    }
    // SAFETY: musl passes a buffer of `size` bytes.
    unsafe {
        core::ptr::write_bytes(mask, 0, 8);
        mask.write(1);
    }
    8
}

/// `sysinfo(info)`: memory from the heap the compartment has.
pub fn sysinfo(info: *mut Sysinfo) -> i64 {
    if info.is_null() {
        return -EFAULT;
    }
    let boot = flexos_kernel::boot_info();
    let total = boot.heap_size;
    let used = crate::mem::mapped_bytes() as u64;
    let s = Sysinfo {
        uptime: (flexos_kernel::time::now_ns() / 1_000_000_000) as i64,
        totalram: total,
        freeram: total.saturating_sub(used),
        procs: sched::live_threads() as u16,
        mem_unit: 1,
        ..Sysinfo::default()
    };
    // SAFETY: musl passes the caller's `struct sysinfo`.
    unsafe { info.write(s) };
    0
}

/// `getrusage(who, usage)`: all time is user time.
pub fn getrusage(usage: *mut Rusage) -> i64 {
    if usage.is_null() {
        return -EFAULT;
    }
    let ns = flexos_kernel::time::now_ns();
    let r = Rusage {
        utime: Timeval {
            tv_sec: (ns / 1_000_000_000) as i64,
            tv_usec: ((ns % 1_000_000_000) / 1000) as i64,
        },
        ..Rusage::default()
    };
    // SAFETY: musl passes the caller's `struct rusage`.
    unsafe { usage.write(r) };
    0
}

/// `rt_sigaction(sig, act, old, size)`: recorded only.
pub fn sigaction(sig: u64, act: *const [u64; 4], old: *mut [u64; 4]) -> i64 {
    if sig == 0 || sig >= NSIG {
        return -EINVAL;
    }
    let mut s = SIGNALS.get().borrow_mut();
    if !old.is_null() {
        // SAFETY: musl passes a `struct k_sigaction` (4 words).
        unsafe { old.write(s.actions[sig as usize]) };
    }
    if !act.is_null() {
        // SAFETY: as above.
        s.actions[sig as usize] = unsafe { act.read() };
    }
    0
}

/// `rt_sigprocmask(how, set, old, size)`: recorded only.
pub fn sigprocmask(how: u64, set: *const u64, old: *mut u64) -> i64 {
    let mut s = SIGNALS.get().borrow_mut();
    if !old.is_null() {
        // SAFETY: musl passes a sigset (8 bytes on x86_64 for the kernel).
        unsafe { old.write(s.mask) };
    }
    if !set.is_null() {
        // SAFETY: as above.
        let set = unsafe { set.read() };
        s.mask = match how {
            0 => s.mask | set,
            1 => s.mask & !set,
            2 => set,
            _ => return -EINVAL,
        };
    }
    0
}

/// Signal names for reports.
fn signal_name(sig: u64) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

/// `kill`, `tkill`, `tgkill` aimed at this process: signal 0 checks existence; a
/// signal whose action is to ignore it (SIGPIPE, SIGCHLD, a handler set to SIG_IGN)
/// does nothing; any other ends the program as its default action would, with a
/// crash report (`abort()` arrives here as SIGABRT).
pub fn kill(pid: i64, sig: u64) -> i64 {
    if pid != PID && pid != 0 && pid != -1 && pid != i64::from(sched::current_tid()) {
        return -ESRCH;
    }
    if sig == 0 {
        return 0;
    }
    if sig >= NSIG {
        return -EINVAL;
    }
    let handler = SIGNALS.get().borrow().actions[sig as usize][0];
    const SIG_IGN: u64 = 1;
    let ignored_by_default = matches!(sig, 13 | 17 | 23 | 28);
    if handler == SIG_IGN || (handler == 0 && ignored_by_default) {
        return 0;
    }
    if handler > SIG_IGN && sig != SIGABRT {
        // A handler is installed: run it now, synchronously, as the kernel would
        // on return from this call.
        // SAFETY: the program installed this function as the handler of `sig`.
        let f: extern "C" fn(i32) = unsafe { core::mem::transmute(handler as usize) };
        f(sig as i32);
        return 0;
    }
    panic!(
        "posix: the program sent itself {} ({sig}); its default action ends the program",
        signal_name(sig)
    );
}

/// Fills `buf` with random bytes: RDRAND when the CPU has it (it runs in ring 3
/// without an exit), else a generator seeded from the TSC.
pub fn fill_random(buf: &mut [u8]) {
    // CPUID leaf 1 exists on every x86_64 CPU.
    let has_rdrand = __cpuid(1).ecx & (1 << 30) != 0;
    let mut state = flexos_kernel::time::rdtsc() | 1;
    for chunk in buf.chunks_mut(8) {
        let mut word = 0u64;
        let mut ok = false;
        if has_rdrand {
            for _ in 0..10 {
                let mut v: u64 = 0;
                let carry: u8;
                // SAFETY: RDRAND is present (CPUID above) and only writes a register.
                unsafe {
                    core::arch::asm!("rdrand {v}", "setc {c}", v = out(reg) v, c = out(reg_byte) carry, options(nomem, nostack))
                };
                if carry == 1 {
                    word = v;
                    ok = true;
                    break;
                }
            }
        }
        if !ok {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            word = z ^ (z >> 31) ^ flexos_kernel::time::rdtsc();
        }
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
}

/// `getrandom(buf, len, flags)`.
pub fn getrandom(buf: *mut u8, len: usize) -> i64 {
    if buf.is_null() && len > 0 {
        return -EFAULT;
    }
    // SAFETY: musl passes the caller's buffer of `len` bytes.
    let slice = unsafe { core::slice::from_raw_parts_mut(buf, len) };
    fill_random(slice);
    len as i64
}

/// `prctl(option, arg2, ...)`: thread names only.
pub fn prctl(option: u64, arg2: u64) -> i64 {
    const PR_SET_NAME: u64 = 15;
    const PR_GET_NAME: u64 = 16;
    match option {
        PR_SET_NAME => 0,
        PR_GET_NAME => {
            if arg2 == 0 {
                return -EFAULT;
            }
            let name = b"flexos\0";
            // SAFETY: PR_GET_NAME's buffer holds 16 bytes.
            unsafe { core::ptr::copy_nonoverlapping(name.as_ptr(), arg2 as *mut u8, name.len()) };
            0
        }
        _ => -EINVAL,
    }
}

/// `fork`, `vfork`, `clone` for a process, `execve`, `wait4`: there is one process.
pub fn no_processes() -> i64 {
    -ENOSYS
}
