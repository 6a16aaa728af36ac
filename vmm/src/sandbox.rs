//! The sandbox: every thread of the monitor runs under a seccomp filter of its own,
//! built with `seccompiler`, that allows only the system calls that thread makes. A
//! guest that found a bug in the monitor (a device model, the hypercall decoder, the
//! gdb stub) can then do no more with that thread than the thread already did: no new
//! file, socket or process, no `execve`, no executable memory.
//!
//! # When each filter goes on
//!
//! Seccomp filters belong to a thread, are inherited by the threads it starts and only
//! ever add restrictions (every filter of a thread judges each call; the strictest
//! answer wins). So:
//!
//! - `main` ([`configure`]) installs the `SIGSYS` handler below and the device-thread
//!   hook, before any thread starts.
//! - The monitor thread sets everything up unfiltered (KVM, guest memory, files, the
//!   gdb listener, the tap) and starts its threads; then it installs its own filter
//!   ([`Thread::Main`]), and only then lets the vCPUs run (they wait on a barrier). It
//!   reads nothing a guest wrote before its filter is on.
//! - Every thread it starts installs its own filter first thing: `signals`, `idle-N`,
//!   `gdb`, `post-mortem`, each `vcpu-NAME` (after pinning itself to its CPU).
//! - A device thread is started by its owner's vCPU thread when the driver sets
//!   DRIVER_OK, so it inherits that vCPU's filter before installing its own (through
//!   the `devices` crate's thread-start hook, once the thread is pinned). A vCPU
//!   that starts device threads is therefore allowed what those threads do, plus what
//!   starting a thread takes; the device thread then narrows itself to its own list.
//!   `clone3` cannot be filtered by its flags (they sit behind a pointer), so such a
//!   vCPU also installs a one-rule filter answering `clone3` with ENOSYS: the C library
//!   then falls back to `clone`, which is allowed only with `CLONE_THREAD` (a thread of
//!   this process, never a new one).
//!
//! # What each thread may do, and why
//!
//! Every filter starts from a base that any Rust thread needs: memory (`mmap` and
//! `mprotect` never with `PROT_EXEC`, `munmap`, `mremap`, `madvise`, `brk`), locks and
//! channels (`futex`, `sched_yield`), time (`clock_gettime`, when the vDSO cannot
//! answer), `getrandom` (hash map seeds), `close`, signal masks and returns
//! (`rt_sigprocmask`, `rt_sigreturn`, `sigaltstack`), thread and process exit
//! (`exit`, `exit_group`), the abort path (`getpid`, `gettid`, `tgkill` with SIGABRT
//! only), and what the violation handler itself calls (`prctl(PR_GET_NAME)`, `write`,
//! `exit_group`). On top of it:
//!
//! - **monitor thread** (`main`, after setup): `pread64`, and with a debugger
//!   `unlink`, `unlinkat`, `newfstatat`, `statx`. It waits for the first outcome,
//!   stops the devices (an eventfd write, joins), renders the crash report (reading the
//!   rest of the image through the file opened at start) and removes the gdb socket.
//! - **`vcpu-NAME`**: `ioctl` with KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS,
//!   KVM_GET_FPU or KVM_SET_FPU only; `read`, `poll`, `ppoll`. The KVM_RUN loop, its
//!   exits and hypercalls (console lines to stdout, doorbell eventfds, sleep = poll on
//!   its doorbell), crash reports and debugger stops (kicked by a signal).
//!   - owning a device: `fcntl(F_DUPFD_CLOEXEC)`, and for virtio-net
//!     `ioctl(TUNSETOFFLOAD)`: activating it when its driver sets DRIVER_OK (cloning
//!     its eventfds, setting the tap's offloads).
//!   - serving it inline (`--tune blk=vcpu`, or the policy's choice): the device's I/O
//!     below, since a kick then exits to the vCPU, which answers the queue.
//!   - starting its thread: everything that thread may do, and `clone` (CLONE_THREAD
//!     only), `clone3` (ENOSYS), `set_robust_list`, `rseq`, `sched_getaffinity`,
//!     `sched_setaffinity(0, ..)`, `prctl(PR_SET_NAME)`, `prctl(PR_SET_NO_NEW_PRIVS)`,
//!     `seccomp(SECCOMP_SET_MODE_FILTER)`, `epoll_create1`, `eventfd2`, `epoll_ctl`:
//!     a new thread, its event loop, the child pinning itself to its CPU, and the
//!     child's own filter.
//! - **`virtio-blk`**: `epoll_wait`, `epoll_pwait`, `epoll_ctl`, `read`, `pread64`,
//!   `pwrite64`, `fdatasync`. The event loop over its kick eventfd; reads, writes and
//!   flushes of the disk file.
//! - **`virtio-net`**: the same loop, `readv` and `writev`: frames from and to the tap.
//! - **`gdb`**: `accept`, `accept4`, `recvfrom`, `sendto`, `read`, `poll`, `ppoll`,
//!   `ioctl(FIONBIO)`, `setsockopt(IPPROTO_TCP, TCP_NODELAY)`, `tgkill` with the kick
//!   signal only, `unlink`, `unlinkat`, `newfstatat`, `statx`. The remote protocol on
//!   one connection, kicking vCPUs out of KVM_RUN, removing its socket file.
//! - **`post-mortem`**: what `gdb` may do, and `openat`, `mkdir`, `mkdirat`, `lseek`,
//!   `mincore`, `rename`, `renameat`, `renameat2`: one core file per compartment in
//!   `--core`'s directory (written under a temporary name, then renamed), then the
//!   `--gdb-on-crash` session.
//! - **`signals`**: `rt_sigtimedwait`, `unlink`, `unlinkat`: waiting for SIGINT or
//!   SIGTERM, removing the gdb socket, exiting.
//! - **`idle-N`**: nothing more; it spins at SCHED_IDLE.
//!
//! Where the C library may use either of two equivalent calls (`poll`/`ppoll`,
//! `epoll_wait`/`epoll_pwait`, `unlink`/`unlinkat`, ...) both are allowed, so that the
//! same monitor works with another C library build.
//!
//! # A call outside the filter
//!
//! The filters answer it with `SECCOMP_RET_TRAP`, not `SECCOMP_RET_KILL_PROCESS`: the
//! kernel then sends the thread `SIGSYS` (the call is not made), and the handler
//! installed by [`configure`] writes one line naming the thread (its `comm`, e.g.
//! `vcpu-app`) and the call (number, and name from a small table of the calls in play)
//! and ends the process with status 71:
//!
//! ```text
//! flexos-vmm: sandbox: thread vcpu-app made system call 41 (socket), which its seccomp filter forbids; the run is stopped (a monitor bug or a compromised monitor: report it; --no-seccomp runs without the sandbox)
//! ```
//!
//! KILL would end the process silently (a shell sees status 159 and nothing else), so
//! a forgotten call in a rare path (a debugger session, a device reset, a crash
//! report) could not be told from a crash of the monitor, and the CLI contract (one
//! line saying what went wrong, documented exit statuses) would break. TRAP costs
//! nothing in safety: the call never runs, the handler only calls `prctl(PR_GET_NAME)`,
//! `write` and `exit_group`, which every filter allows, no filter allows
//! `rt_sigaction` (the handler cannot be replaced), and a thread that blocked SIGSYS
//! is killed by the kernel instead. A call from another architecture's ABI (`int
//! 0x80`) still kills the process at once (the filters' architecture check).
//!
//! `--no-seccomp` runs without any of this, to debug the monitor itself (under strace,
//! say). The environment variable `FLEXOS_SANDBOX_SELFTEST=KIND` (one of [`KINDS`])
//! makes the first thread of that kind call `getppid`, which no filter allows, right
//! after installing its filter: a check, from the outside, that the thread really is
//! filtered and that the report works (the end-to-end tests use it). It is harmless:
//! without the sandbox the call just returns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::{Result, VmmError, EXIT_KVM};
use crate::policy::{DeviceKind, DeviceRun};

/// The environment variable of the self-test (see the module docs).
pub const SELFTEST_VAR: &str = "FLEXOS_SANDBOX_SELFTEST";

/// The kinds of thread, as [`SELFTEST_VAR`] names them.
pub const KINDS: &[&str] = &[
    "main",
    "signals",
    "vcpu",
    "virtio-blk",
    "virtio-net",
    "gdb",
    "post-mortem",
    "idle",
];

/// A thread of the monitor, as far as its filter is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thread {
    /// The monitor thread after setup; `debug`: a gdb socket file may be removed.
    Main { debug: bool },
    /// A compartment's vCPU thread.
    Vcpu(VcpuUse),
    /// A device's own thread.
    Device(DeviceKind),
    /// The gdb stub (`--gdb`).
    Gdb,
    /// The post-mortem watcher (`--core`, `--gdb-on-crash`).
    PostMortem,
    /// The thread that waits for SIGINT and SIGTERM.
    Signals,
    /// A SCHED_IDLE spinner (`--tune idle-spinner=on`).
    IdleSpinner,
    /// A device thread of a kind the sandbox does not know: the base only, so that
    /// its first real call is reported (fail closed).
    Unknown,
}

impl Thread {
    /// The kind, as [`KINDS`] names it.
    pub fn kind(self) -> &'static str {
        match self {
            Thread::Main { .. } => "main",
            Thread::Vcpu(_) => "vcpu",
            Thread::Device(kind) => kind.name(),
            Thread::Gdb => "gdb",
            Thread::PostMortem => "post-mortem",
            Thread::Signals => "signals",
            Thread::IdleSpinner => "idle",
            Thread::Unknown => "unknown",
        }
    }
}

/// Devices, as a set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    pub block: bool,
    pub net: bool,
}

impl Devices {
    fn add(&mut self, kind: DeviceKind) {
        match kind {
            DeviceKind::Block => self.block = true,
            DeviceKind::Net => self.net = true,
        }
    }

    fn kinds(self) -> impl Iterator<Item = DeviceKind> {
        [(self.block, DeviceKind::Block), (self.net, DeviceKind::Net)]
            .into_iter()
            .filter_map(|(on, kind)| on.then_some(kind))
    }
}

/// What a vCPU thread does besides running its guest: the devices its compartment
/// owns, served in the thread (`inline`) or on threads it starts (`starts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuUse {
    pub inline: Devices,
    pub starts: Devices,
}

impl VcpuUse {
    /// Compartment `id`'s use, from the policy's devices (kind, owner, where it runs).
    pub fn of(id: u32, devices: &[(DeviceKind, u32, DeviceRun)]) -> Self {
        let mut used = VcpuUse::default();
        for &(kind, _, run) in devices.iter().filter(|d| d.1 == id) {
            match run {
                DeviceRun::OwnerVcpu => used.inline.add(kind),
                DeviceRun::OwnThread => used.starts.add(kind),
            }
        }
        used
    }

    fn owns(self) -> impl Iterator<Item = DeviceKind> {
        let all = Devices {
            block: self.inline.block || self.starts.block,
            net: self.inline.net || self.starts.net,
        };
        all.kinds()
    }
}

// ---- system calls and their arguments ------------------------------------------

/// `(number, "SYS_name")`.
macro_rules! sys {
    ($($name:ident),* $(,)?) => { &[$((libc::$name, stringify!($name))),*] };
}

/// The system calls in play (every one any filter allows) and a few a compromised
/// monitor would want, so that a report names them.
#[rustfmt::skip]
static NAMES: &[(i64, &str)] = sys![
    SYS_read, SYS_write, SYS_open, SYS_close, SYS_stat, SYS_fstat, SYS_lstat, SYS_poll,
    SYS_lseek, SYS_mmap, SYS_mprotect, SYS_munmap, SYS_brk, SYS_rt_sigaction,
    SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_ioctl, SYS_pread64, SYS_pwrite64, SYS_readv,
    SYS_writev, SYS_access, SYS_pipe, SYS_sched_yield, SYS_mremap, SYS_mincore, SYS_madvise,
    SYS_dup, SYS_dup2, SYS_nanosleep, SYS_getpid, SYS_socket, SYS_connect, SYS_accept,
    SYS_sendto, SYS_recvfrom, SYS_sendmsg, SYS_recvmsg, SYS_shutdown, SYS_bind, SYS_listen,
    SYS_setsockopt, SYS_clone, SYS_fork, SYS_vfork, SYS_execve, SYS_exit, SYS_wait4,
    SYS_kill, SYS_uname, SYS_fcntl, SYS_flock, SYS_fsync, SYS_fdatasync, SYS_ftruncate,
    SYS_rename, SYS_mkdir, SYS_unlink, SYS_chmod, SYS_fchmod, SYS_chown, SYS_umask,
    SYS_ptrace, SYS_getuid, SYS_setuid, SYS_getppid, SYS_sigaltstack, SYS_prctl,
    SYS_arch_prctl, SYS_mount, SYS_rt_sigtimedwait, SYS_gettid, SYS_tkill, SYS_futex,
    SYS_sched_setaffinity, SYS_sched_getaffinity, SYS_epoll_wait, SYS_epoll_ctl,
    SYS_clock_gettime, SYS_clock_nanosleep, SYS_exit_group, SYS_tgkill, SYS_openat,
    SYS_mkdirat, SYS_newfstatat, SYS_unlinkat, SYS_renameat, SYS_ppoll, SYS_set_robust_list,
    SYS_epoll_pwait, SYS_eventfd2, SYS_epoll_create1, SYS_accept4, SYS_pipe2,
    SYS_process_vm_readv, SYS_process_vm_writev, SYS_renameat2, SYS_seccomp, SYS_getrandom,
    SYS_memfd_create, SYS_bpf, SYS_execveat, SYS_statx, SYS_rseq, SYS_io_uring_setup,
    SYS_pidfd_open, SYS_clone3,
];

/// The name of system call `nr` on this architecture, if the table has it.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    NAMES
        .iter()
        .find(|&&(n, _)| n == nr)
        .map(|&(_, name)| name.strip_prefix("SYS_").unwrap_or(name))
}

/// Dword argument comparison; the indexes below are constants under 6.
fn cond(index: u8, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)
        .expect("argument indexes are below 6")
}

fn rule(conditions: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conditions).expect("a rule has at least one condition")
}

/// Argument `index` equals `value` (its low 32 bits: ioctl requests, flags, signals).
fn arg_is(index: u8, value: u64) -> SeccompRule {
    rule(vec![cond(index, SeccompCmpOp::Eq, value)])
}

/// Argument `index` has every bit of `bits` set.
fn arg_has(index: u8, bits: u64) -> SeccompRule {
    rule(vec![cond(index, SeccompCmpOp::MaskedEq(bits), bits)])
}

/// Argument `index` has no bit of `bits` set.
fn arg_lacks(index: u8, bits: u64) -> SeccompRule {
    rule(vec![cond(index, SeccompCmpOp::MaskedEq(bits), 0)])
}

// The vCPU ioctls, computed as kvm-ioctls declares them.
vmm_sys_util::ioctl_io_nr!(KVM_RUN, kvm_bindings::KVMIO, 0x80);
vmm_sys_util::ioctl_ior_nr!(
    KVM_GET_REGS,
    kvm_bindings::KVMIO,
    0x81,
    kvm_bindings::kvm_regs
);
vmm_sys_util::ioctl_iow_nr!(
    KVM_SET_REGS,
    kvm_bindings::KVMIO,
    0x82,
    kvm_bindings::kvm_regs
);
vmm_sys_util::ioctl_ior_nr!(
    KVM_GET_SREGS,
    kvm_bindings::KVMIO,
    0x83,
    kvm_bindings::kvm_sregs
);
vmm_sys_util::ioctl_ior_nr!(
    KVM_GET_FPU,
    kvm_bindings::KVMIO,
    0x8c,
    kvm_bindings::kvm_fpu
);
vmm_sys_util::ioctl_iow_nr!(
    KVM_SET_FPU,
    kvm_bindings::KVMIO,
    0x8d,
    kvm_bindings::kvm_fpu
);

/// The calls a filter allows: each with any arguments (`None`) or with arguments that
/// match one of its rules.
#[derive(Clone, Debug, Default)]
struct Rules(BTreeMap<i64, Option<Vec<SeccompRule>>>);

impl Rules {
    fn any(&mut self, calls: &[i64]) -> &mut Self {
        for &call in calls {
            self.0.insert(call, None);
        }
        self
    }

    fn when(&mut self, call: i64, rule: SeccompRule) -> &mut Self {
        if let Some(rules) = self.0.entry(call).or_insert_with(|| Some(Vec::new())) {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
        self
    }

    fn merge(&mut self, other: &Rules) -> &mut Self {
        for (&call, rules) in &other.0 {
            match rules {
                None => {
                    self.any(&[call]);
                }
                Some(rules) => {
                    for r in rules {
                        self.when(call, r.clone());
                    }
                }
            }
        }
        self
    }

    /// True when every call `other` allows, this allows too (with any arguments, or
    /// with the same rule).
    #[cfg(test)]
    fn covers(&self, other: &Rules) -> bool {
        other
            .0
            .iter()
            .all(|(call, theirs)| match (self.0.get(call), theirs) {
                (Some(None), _) => true,
                (Some(Some(ours)), Some(theirs)) => theirs.iter().all(|r| ours.contains(r)),
                _ => false,
            })
    }

    fn allows(&self, call: i64) -> bool {
        self.0.contains_key(&call)
    }

    fn program(&self) -> std::result::Result<BpfProgram, seccompiler::BackendError> {
        let rules = self
            .0
            .iter()
            .map(|(&call, rules)| (call, rules.clone().unwrap_or_default()))
            .collect();
        SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, arch())?.try_into()
    }
}

fn arch() -> TargetArch {
    TargetArch::x86_64
}

/// What any thread may need (see the module docs).
fn base() -> Rules {
    let exec = libc::PROT_EXEC as u64;
    let mut r = Rules::default();
    r.any(&[
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_clock_gettime,
        libc::SYS_getrandom,
        libc::SYS_close,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_write,
    ])
    .when(libc::SYS_mmap, arg_lacks(2, exec))
    .when(libc::SYS_mprotect, arg_lacks(2, exec))
    .when(libc::SYS_prctl, arg_is(0, libc::PR_GET_NAME as u64))
    .when(libc::SYS_tgkill, arg_is(2, libc::SIGABRT as u64));
    r
}

/// Removing a file (a gdb socket) after checking what it is.
fn remove_file() -> Rules {
    let mut r = Rules::default();
    r.any(&[
        libc::SYS_unlink,
        libc::SYS_unlinkat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
    ]);
    r
}

/// A device's own work, wherever it runs.
fn device_io(kind: DeviceKind) -> Rules {
    let mut r = Rules::default();
    match kind {
        DeviceKind::Block => r.any(&[libc::SYS_pread64, libc::SYS_pwrite64, libc::SYS_fdatasync]),
        DeviceKind::Net => r.any(&[libc::SYS_readv, libc::SYS_writev]),
    };
    r
}

/// A device's thread: its event loop and its work.
fn device_thread(kind: DeviceKind) -> Rules {
    let mut r = base();
    r.any(&[
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_ctl,
        libc::SYS_read,
    ])
    .merge(&device_io(kind));
    r
}

/// Starting a thread (with its event loop) and letting it install its own filter.
fn thread_start() -> Rules {
    let mut r = Rules::default();
    r.any(&[
        libc::SYS_clone3,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_sched_getaffinity,
        libc::SYS_epoll_create1,
        libc::SYS_eventfd2,
        libc::SYS_epoll_ctl,
    ])
    .when(libc::SYS_clone, arg_has(0, libc::CLONE_THREAD as u64))
    .when(libc::SYS_sched_setaffinity, arg_is(0, 0))
    .when(libc::SYS_prctl, arg_is(0, libc::PR_SET_NAME as u64))
    .when(libc::SYS_prctl, arg_is(0, libc::PR_SET_NO_NEW_PRIVS as u64))
    .when(
        libc::SYS_seccomp,
        arg_is(0, u64::from(libc::SECCOMP_SET_MODE_FILTER)),
    );
    r
}

fn vcpu(used: VcpuUse) -> Rules {
    let mut r = base();
    r.any(&[libc::SYS_read, libc::SYS_poll, libc::SYS_ppoll]);
    for request in [
        KVM_RUN(),
        KVM_GET_REGS(),
        KVM_SET_REGS(),
        KVM_GET_SREGS(),
        KVM_GET_FPU(),
        KVM_SET_FPU(),
    ] {
        r.when(libc::SYS_ioctl, arg_is(1, request));
    }
    for kind in used.owns() {
        r.when(libc::SYS_fcntl, arg_is(1, libc::F_DUPFD_CLOEXEC as u64));
        if kind == DeviceKind::Net {
            r.when(libc::SYS_ioctl, arg_is(1, libc::TUNSETOFFLOAD));
        }
    }
    for kind in used.inline.kinds() {
        r.merge(&device_io(kind));
    }
    for kind in used.starts.kinds() {
        r.merge(&thread_start()).merge(&device_thread(kind));
    }
    r
}

/// The gdb stub's connection, and kicking vCPUs.
fn gdb() -> Rules {
    let mut r = base();
    r.any(&[
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_read,
        libc::SYS_poll,
        libc::SYS_ppoll,
    ])
    .when(libc::SYS_ioctl, arg_is(1, libc::FIONBIO))
    .when(
        libc::SYS_setsockopt,
        rule(vec![
            cond(1, SeccompCmpOp::Eq, libc::IPPROTO_TCP as u64),
            cond(2, SeccompCmpOp::Eq, libc::TCP_NODELAY as u64),
        ]),
    )
    .when(
        libc::SYS_tgkill,
        arg_is(2, vmm_sys_util::signal::SIGRTMIN() as u64),
    )
    .merge(&remove_file());
    r
}

fn post_mortem() -> Rules {
    let mut r = gdb();
    r.any(&[
        libc::SYS_openat,
        libc::SYS_mkdir,
        libc::SYS_mkdirat,
        libc::SYS_lseek,
        libc::SYS_mincore,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_renameat2,
    ]);
    r
}

/// The rules of `thread`'s filter.
fn rules(thread: Thread) -> Rules {
    match thread {
        Thread::Main { debug } => {
            let mut r = base();
            r.any(&[libc::SYS_pread64]);
            if debug {
                r.merge(&remove_file());
            }
            r
        }
        Thread::Vcpu(used) => vcpu(used),
        Thread::Device(kind) => device_thread(kind),
        Thread::Gdb => gdb(),
        Thread::PostMortem => post_mortem(),
        Thread::Signals => {
            let mut r = base();
            r.any(&[
                libc::SYS_rt_sigtimedwait,
                libc::SYS_unlink,
                libc::SYS_unlinkat,
            ]);
            r
        }
        Thread::IdleSpinner | Thread::Unknown => base(),
    }
}

/// The BPF programs `thread` installs, in order: the ENOSYS answer to `clone3` first
/// when it starts threads (see the module docs), then its filter.
pub fn programs(thread: Thread) -> std::result::Result<Vec<BpfProgram>, seccompiler::BackendError> {
    let rules = rules(thread);
    let mut programs = Vec::with_capacity(2);
    if rules.allows(libc::SYS_clone3) {
        let clone3 = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
        programs.push(
            SeccompFilter::new(
                clone3,
                SeccompAction::Allow,
                SeccompAction::Errno(libc::ENOSYS as u32),
                arch(),
            )?
            .try_into()?,
        );
    }
    programs.push(rules.program()?);
    Ok(programs)
}

// ---- installing ------------------------------------------------------------------

/// The sandbox of this process, once [`configure`]d on.
struct Config {
    /// The kind of thread that calls `getppid` after installing its filter.
    selftest: Option<&'static str>,
    selftest_done: AtomicBool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Turns the sandbox on (or leaves it off, for `--no-seccomp`): installs the `SIGSYS`
/// handler and the device threads' hook, and reads [`SELFTEST_VAR`]. Call before any
/// thread starts; without it, [`enter`] does nothing (library users, unit tests).
pub fn configure(on: bool) -> Result<()> {
    if !on {
        return Ok(());
    }
    let selftest = match std::env::var(SELFTEST_VAR) {
        Ok(value) => Some(KINDS.iter().copied().find(|&k| k == value).ok_or_else(|| {
            VmmError::Usage(format!(
                "{SELFTEST_VAR}={}: want one of {}",
                crate::escape::line(&value),
                KINDS.join(", ")
            ))
        })?),
        Err(_) => None,
    };
    install_handler()
        .map_err(|e| VmmError::Sandbox(format!("cannot install the SIGSYS handler: {e}")))?;
    devices::event_loop::on_thread_start(device_thread_starts);
    let _ = CONFIG.set(Config {
        selftest,
        selftest_done: AtomicBool::new(false),
    });
    Ok(())
}

/// Installs `thread`'s filter on the calling thread (nothing when the sandbox is off).
pub fn enter(thread: Thread) -> Result<()> {
    let Some(config) = CONFIG.get() else {
        return Ok(());
    };
    let fail = |e: String| {
        VmmError::Sandbox(format!(
            "cannot install the seccomp filter of the {} thread: {e}",
            thread.kind()
        ))
    };
    for program in programs(thread).map_err(|e| fail(e.to_string()))? {
        seccompiler::apply_filter(&program).map_err(|e| fail(e.to_string()))?;
    }
    if config.selftest == Some(thread.kind()) && !config.selftest_done.swap(true, Ordering::Relaxed)
    {
        // SAFETY: getppid takes no arguments and has no effect; under the filter it
        // never runs (SIGSYS).
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    Ok(())
}

/// [`enter`] for a thread the monitor starts, which has no one to return an error to:
/// a filter that cannot be installed ends the run (exit 71) with one line.
pub fn enter_thread(thread: Thread) {
    if let Err(e) = enter(thread) {
        crate::stderr_line!("flexos-vmm: error: {e}");
        std::process::exit(EXIT_KVM);
    }
}

/// The device threads' hook: each installs its device's filter first thing.
fn device_thread_starts(name: &str) {
    let kind = [DeviceKind::Block, DeviceKind::Net]
        .into_iter()
        .find(|k| k.name() == name);
    enter_thread(kind.map_or(Thread::Unknown, Thread::Device));
}

/// The `SIGSYS` fields of a `siginfo_t` on x86_64 (`_sigsys` in the kernel's union).
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

/// `si_code` of a SIGSYS that a seccomp filter raised.
const SYS_SECCOMP: libc::c_int = 1;

fn install_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid plain data; every field used is set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action.sa_mask` is a valid sigset_t owned by `action`; blocking every
    // signal keeps the handler from being interrupted halfway through its line.
    unsafe { libc::sigfillset(&mut action.sa_mask) };
    // SAFETY: `action` is initialised and lives for the call; a null old action is
    // allowed.
    if unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes the report of a forbidden call and ends the process: async-signal-safe
/// (no allocation, no lock; only `prctl(PR_GET_NAME)`, `write` and `_exit`).
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes the siginfo of this SIGSYS, whose union holds the
    // `_sigsys` fields for a seccomp trap (checked through `code`).
    let (code, nr) = unsafe {
        let info = &*info.cast::<SigsysInfo>();
        (info.code, info.syscall)
    };
    let mut name = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included, into `name`.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    let mut line = [0u8; 512];
    let len = if code == SYS_SECCOMP {
        violation_line(&mut line, &name, i64::from(nr))
    } else {
        Line::new(&mut line)
            .text(b"flexos-vmm: SIGSYS from outside the sandbox; the run is stopped\n")
            .len
    };
    // SAFETY: write and _exit are async-signal-safe; `line[..len]` is initialised.
    unsafe {
        libc::write(2, line.as_ptr().cast(), len);
        libc::_exit(EXIT_KVM);
    }
}

/// A line built in a fixed buffer, cut short rather than overflowing.
struct Line<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Line<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Line { buf, len: 0 }
    }

    fn byte(&mut self, b: u8) -> &mut Self {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
        self
    }

    fn text(&mut self, text: &[u8]) -> &mut Self {
        for &b in text {
            self.byte(b);
        }
        self
    }

    /// `text` up to its first NUL, with anything but printable ASCII shown as `?`
    /// (a compartment name comes from a placement file).
    fn name(&mut self, text: &[u8]) -> &mut Self {
        for &b in text.iter().take_while(|&&b| b != 0) {
            self.byte(if b.is_ascii_graphic() { b } else { b'?' });
        }
        self
    }

    fn number(&mut self, n: i64) -> &mut Self {
        if n < 0 {
            self.byte(b'-');
        }
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.text(&digits[at..])
    }
}

/// The report of forbidden call `nr` made by thread `name` (its comm, NUL-terminated
/// or not), written into `buf`; its length.
fn violation_line(buf: &mut [u8], name: &[u8], nr: i64) -> usize {
    let mut line = Line::new(buf);
    line.text(b"flexos-vmm: sandbox: thread ")
        .name(name)
        .text(b" made system call ")
        .number(nr);
    if let Some(known) = syscall_name(nr) {
        line.text(b" (").text(known.as_bytes()).text(b")");
    }
    line.text(
        b", which its seccomp filter forbids; the run is stopped \
          (a monitor bug or a compromised monitor: report it; \
          --no-seccomp runs without the sandbox)",
    );
    // The newline survives a cut.
    let end = line.len.min(line.buf.len().saturating_sub(1));
    line.len = end;
    line.byte(b'\n');
    line.len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_thread() -> Vec<Thread> {
        let mut all = vec![
            Thread::Main { debug: false },
            Thread::Main { debug: true },
            Thread::Device(DeviceKind::Block),
            Thread::Device(DeviceKind::Net),
            Thread::Gdb,
            Thread::PostMortem,
            Thread::Signals,
            Thread::IdleSpinner,
            Thread::Unknown,
        ];
        for bits in 0..16u8 {
            let set = |b: u8| Devices {
                block: bits & b != 0,
                net: bits & (b << 1) != 0,
            };
            all.push(Thread::Vcpu(VcpuUse {
                inline: set(1),
                starts: set(4),
            }));
        }
        all
    }

    #[test]
    fn every_threads_filter_compiles() {
        for thread in every_thread() {
            let programs = programs(thread).unwrap_or_else(|e| panic!("{thread:?}: {e}"));
            let last = programs.last().expect("a filter");
            assert!(
                !last.is_empty() && last.len() < 4096,
                "{thread:?}: {}",
                last.len()
            );
        }
    }

    #[test]
    fn every_allowed_call_has_a_name() {
        for thread in every_thread() {
            for &call in rules(thread).0.keys() {
                assert!(syscall_name(call).is_some(), "{thread:?}: call {call}");
            }
        }
        assert_eq!(syscall_name(libc::SYS_getppid), Some("getppid"));
        assert_eq!(syscall_name(0), Some("read"));
        assert_eq!(syscall_name(41), Some("socket"));
        assert_eq!(syscall_name(100_000), None);
        let mut numbers: Vec<i64> = NAMES.iter().map(|n| n.0).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), NAMES.len(), "a call listed twice");
    }

    #[test]
    fn a_vcpu_allows_what_the_device_threads_it_starts_do() {
        // A device thread inherits its vCPU's filter: the vCPU's must cover the
        // device's, or the device's first call would be refused by the vCPU's.
        for kind in [DeviceKind::Block, DeviceKind::Net] {
            let mut starts = Devices::default();
            starts.add(kind);
            let v = rules(Thread::Vcpu(VcpuUse {
                starts,
                ..VcpuUse::default()
            }));
            assert!(v.covers(&rules(Thread::Device(kind))), "{kind:?}");
            assert!(v.covers(&thread_start()), "{kind:?}");
        }
    }

    #[test]
    fn each_thread_gets_only_its_own_calls() {
        let plain = rules(Thread::Vcpu(VcpuUse::default()));
        for call in [
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_pread64,
            libc::SYS_readv,
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_execve,
            libc::SYS_fcntl,
        ] {
            assert!(!plain.allows(call), "{:?}", syscall_name(call));
        }
        let inline = rules(Thread::Vcpu(VcpuUse {
            inline: Devices {
                block: true,
                net: false,
            },
            ..VcpuUse::default()
        }));
        assert!(inline.allows(libc::SYS_pwrite64) && !inline.allows(libc::SYS_clone));
        assert!(!rules(Thread::Device(DeviceKind::Net)).allows(libc::SYS_pwrite64));
        assert!(!rules(Thread::Device(DeviceKind::Block)).allows(libc::SYS_writev));
        assert!(!rules(Thread::Gdb).allows(libc::SYS_openat));
        assert!(rules(Thread::PostMortem).covers(&rules(Thread::Gdb)));
        assert!(!rules(Thread::Main { debug: false }).allows(libc::SYS_unlink));
        for thread in every_thread() {
            let r = rules(thread);
            // The handler's own calls, everywhere.
            assert!(r.allows(libc::SYS_write) && r.allows(libc::SYS_exit_group));
            assert!(r.allows(libc::SYS_prctl));
            for call in [
                libc::SYS_execve,
                libc::SYS_socket,
                libc::SYS_getppid,
                libc::SYS_rt_sigaction,
                libc::SYS_ptrace,
                libc::SYS_fork,
            ] {
                assert!(!r.allows(call), "{thread:?}: {:?}", syscall_name(call));
            }
        }
    }

    #[test]
    fn kvm_requests_are_kvm_ioctls_numbers() {
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
        assert_eq!(KVM_SET_REGS(), 0x4090_ae82);
        assert_eq!(KVM_GET_SREGS(), 0x8138_ae83);
        assert_eq!(KVM_GET_FPU(), 0x81a0_ae8c);
        assert_eq!(KVM_SET_FPU(), 0x41a0_ae8d);
    }

    #[test]
    fn only_threads_that_start_threads_answer_clone3_with_enosys() {
        assert_eq!(programs(Thread::Gdb).unwrap().len(), 1);
        let starts = VcpuUse {
            starts: Devices {
                block: true,
                net: false,
            },
            ..VcpuUse::default()
        };
        assert_eq!(programs(Thread::Vcpu(starts)).unwrap().len(), 2);
    }

    #[test]
    fn vcpu_use_follows_the_policy() {
        let devices = [
            (DeviceKind::Block, 1, DeviceRun::OwnerVcpu),
            (DeviceKind::Net, 0, DeviceRun::OwnThread),
        ];
        let net = VcpuUse::of(0, &devices);
        assert!(net.starts.net && !net.starts.block && net.inline == Devices::default());
        let blk = VcpuUse::of(1, &devices);
        assert!(blk.inline.block && blk.starts == Devices::default());
        assert_eq!(VcpuUse::of(2, &devices), VcpuUse::default());
    }

    fn line(name: &[u8], nr: i64, size: usize) -> String {
        let mut buf = vec![0u8; size];
        let len = violation_line(&mut buf, name, nr);
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn the_report_names_the_thread_and_the_call_on_one_line() {
        let text = line(b"vcpu-app\0\0\0", 41, 512);
        assert!(
            text.starts_with(
                "flexos-vmm: sandbox: thread vcpu-app made system call 41 (socket), \
                 which its seccomp filter forbids; the run is stopped ("
            ),
            "{text}"
        );
        assert!(
            text.ends_with("--no-seccomp runs without the sandbox)\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
        // A name with controls cannot forge a line; an unknown call is a number.
        let text = line(b"vcpu-a\nb\x1b", 999_999, 512);
        assert!(
            text.contains("thread vcpu-a?b? made system call 999999, which"),
            "{text}"
        );
        // A short buffer cuts the text, not the newline.
        let text = line(b"gdb", 0, 40);
        assert_eq!(text.len(), 40);
        assert!(text.ends_with('\n') && text.starts_with("flexos-vmm: sandbox: thread gdb"));
        assert!(line(b"x", -1, 64).contains("call -1,"));
    }
}
