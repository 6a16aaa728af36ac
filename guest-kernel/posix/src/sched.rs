//! Cooperative threads inside one compartment: what `clone` makes for musl's
//! `pthread_create`, with futex wait and wake, and the blocking waits of the other
//! system calls (`epoll_wait`, `nanosleep`, a blocking `accept`).
//!
//! A compartment has one vCPU and takes no interrupts, so threads switch only inside a
//! system call that blocks, or `sched_yield`: a thread runs until it waits. This is
//! what Redis needs (its background threads sleep on condition variables until the
//! main thread hands them a job) and it keeps every data structure of the layer free
//! of locks: nothing runs between two instructions of a system call but that call.
//!
//! Each thread has its own stack (musl allocates it) and its own FS base (its TLS
//! block, `CLONE_SETTLS`): a switch saves the callee-saved registers on the old stack,
//! swaps stack pointers and writes the new thread's FS base with `wrfsbase`, which
//! runs natively in ring 3 (the host kernel enables FSGSBASE; measured here).
//!
//! When no thread can run, the one that found this out waits for all of them in
//! [`gate::wait_until`](flexos_kernel::gate::wait_until): until the earliest deadline,
//! or until the network has something for a thread that waits for it. Meanwhile the
//! compartment keeps serving gate calls and pumping a network stack placed here.

use alloc::vec::Vec;
use core::arch::{asm, naked_asm};
use core::cell::RefCell;

use flexos_kernel::time::now_ns;

use crate::Global;
use crate::linux::{CLONE_CHILD_CLEARTID, CLONE_PARENT_SETTID, CLONE_SETTLS, EAGAIN, ETIMEDOUT};

/// Thread id of the first thread (musl's main thread); also the process id.
pub const MAIN_TID: i32 = 1;

/// What a blocked thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A `FUTEX_WAKE` on this address (with a matching bit set).
    Futex { addr: usize, bitset: u32 },
    /// Only its deadline.
    Sleep,
    /// Anything from the network (a readiness check follows; spurious wake-ups are
    /// fine), or its deadline.
    Events,
}

/// Why a blocked thread runs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Another thread woke it (futex).
    Woken,
    /// Its deadline passed.
    Timeout,
    /// The network may have something for it.
    Events,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Runnable,
    Blocked {
        wait: Wait,
        deadline: Option<u64>,
    },
    /// Made runnable for this reason; the thread takes it when it resumes.
    Ready(Wake),
    Exited,
}

struct Thread {
    tid: i32,
    /// The stack pointer saved by [`switch`] while the thread does not run.
    rsp: usize,
    /// Its FS base (the TLS block musl set up).
    fs: u64,
    state: State,
    /// `CLONE_CHILD_CLEARTID`: zeroed and futex-woken when the thread exits
    /// (`pthread_join` waits on it).
    clear_tid: usize,
}

struct Threads {
    list: Vec<Thread>,
    /// Index in `list` of the running thread.
    current: usize,
    next_tid: i32,
    /// A stack to free once its thread no longer runs on it (`__unmapself`).
    dead_stack: Option<(usize, usize)>,
}

static THREADS: Global<RefCell<Option<Threads>>> = Global::new(RefCell::new(None));

/// Readiness of the network without a gate call (shared words only): set by the
/// socket layer; `None` while no socket exists.
pub type EventsCheck = fn() -> bool;
static EVENTS: Global<RefCell<Option<EventsCheck>>> = Global::new(RefCell::new(None));

fn with<R>(f: impl FnOnce(&mut Threads) -> R) -> R {
    let mut guard = THREADS.get().borrow_mut();
    let threads = guard.get_or_insert_with(|| Threads {
        list: alloc::vec![Thread {
            tid: MAIN_TID,
            rsp: 0,
            fs: 0,
            state: State::Runnable,
            clear_tid: 0,
        }],
        current: 0,
        next_tid: MAIN_TID + 1,
        dead_stack: None,
    });
    f(threads)
}

/// Installs the network's readiness check (see [`EventsCheck`]).
pub fn set_events_check(check: EventsCheck) {
    *EVENTS.get().borrow_mut() = Some(check);
}

/// The running thread's id.
pub fn current_tid() -> i32 {
    with(|t| t.list[t.current].tid)
}

/// Number of threads that have not exited.
pub fn live_threads() -> usize {
    with(|t| t.list.iter().filter(|th| th.state != State::Exited).count())
}

/// Sets the running thread's FS base (`arch_prctl(ARCH_SET_FS)`).
pub fn set_fs(base: u64) {
    write_fs(base);
    with(|t| {
        let cur = t.current;
        t.list[cur].fs = base;
    });
}

/// The running thread's FS base.
pub fn fs() -> u64 {
    read_fs()
}

fn write_fs(base: u64) {
    // SAFETY: `wrfsbase` only changes the FS base of this vCPU; the host enables
    // FSGSBASE for ring 3. Nothing in the runtime itself uses FS-relative addressing.
    unsafe { asm!("wrfsbase {}", in(reg) base, options(nostack, preserves_flags)) };
}

fn read_fs() -> u64 {
    let base: u64;
    // SAFETY: `rdfsbase` only reads the FS base.
    unsafe { asm!("rdfsbase {}", out(reg) base, options(nomem, nostack, preserves_flags)) };
    base
}

/// Saves the callee-saved registers on the current stack, stores the stack pointer in
/// `*save`, switches to `next` and restores that thread's registers; returns in the
/// other thread (at its own call of `switch`, or at [`thread_start`] for a new one).
#[unsafe(naked)]
unsafe extern "C" fn switch(save: *mut usize, next: usize) {
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// Where a new thread begins (entered by `switch`'s `ret`): r12 holds the function,
/// r13 its argument; RBP is 0 so backtraces end here. Calls `func(arg)` and exits the
/// thread with its result.
#[unsafe(naked)]
unsafe extern "C" fn thread_start() -> ! {
    naked_asm!(
        "mov rdi, r13",
        "call r12",
        "mov edi, eax",
        "call {exit}",
        "ud2",
        exit = sym thread_exit_c,
    )
}

extern "C" fn thread_exit_c(code: i32) -> ! {
    exit_thread(code)
}

/// Registers a new thread for musl's `__clone(func, stack, flags, arg, ptid, tls,
/// ctid)`: it runs `func(arg)` on `stack` (16-byte aligned top) with FS base `tls`
/// when the running thread next blocks or yields. Returns the new thread's id.
///
/// # Safety
///
/// `stack` is the top of memory reserved for the new thread; `func` is a C function;
/// `ptid`/`ctid`, when their flags are set, point at writable `int`s that outlive the
/// thread (musl's thread descriptor).
pub unsafe fn spawn(
    func: extern "C" fn(*mut u8) -> i32,
    stack: usize,
    flags: u64,
    arg: *mut u8,
    ptid: *mut i32,
    tls: u64,
    ctid: *mut i32,
) -> i64 {
    if stack < 128 {
        return -crate::linux::EINVAL;
    }
    let top = stack & !15;
    // The frame `switch` pops: r15, r14, r13, r12, rbx, rbp, then the return address.
    // After its `ret`, RSP is `top - 16`: 16-byte aligned, as before a `call`.
    let frame = top - 16 - 7 * 8;
    let entry = thread_start as *const () as usize;
    let words: [usize; 7] = [0, 0, arg as usize, func as usize, 0, 0, entry];
    for (i, w) in words.iter().enumerate() {
        // SAFETY: the caller gave us the stack below `stack`; these 72 bytes are its top.
        unsafe { ((frame + i * 8) as *mut usize).write(*w) };
    }
    let fs = if flags & CLONE_SETTLS != 0 {
        tls
    } else {
        read_fs()
    };
    let tid = with(|t| {
        let tid = t.next_tid;
        t.next_tid += 1;
        t.list.push(Thread {
            tid,
            rsp: frame,
            fs,
            state: State::Runnable,
            clear_tid: if flags & CLONE_CHILD_CLEARTID != 0 {
                ctid as usize
            } else {
                0
            },
        });
        tid
    });
    if flags & CLONE_PARENT_SETTID != 0 && !ptid.is_null() {
        // SAFETY: the caller vouches for `ptid` when it sets the flag.
        unsafe { ptid.write_volatile(tid) };
    }
    if flags & CLONE_CHILD_CLEARTID != 0 && !ctid.is_null() {
        // SAFETY: as for `ptid`.
        unsafe { ctid.write_volatile(tid) };
    }
    i64::from(tid)
}

/// Ends the running thread (`SYS_exit`): clears and wakes its `clear_tid`, then runs
/// another thread for good. The last thread's exit ends the program.
pub fn exit_thread(code: i32) -> ! {
    let clear = with(|t| {
        let cur = t.current;
        t.list[cur].state = State::Exited;
        t.list[cur].clear_tid
    });
    if clear != 0 {
        // SAFETY: musl's thread descriptor, registered with CLONE_CHILD_CLEARTID.
        unsafe { (clear as *mut i32).write_volatile(0) };
        futex_wake(clear, i32::MAX as u32, u32::MAX);
    }
    if live_threads() == 0 {
        crate::process::exit_group(code);
    }
    loop {
        wake_due();
        if !reschedule() {
            idle_wait();
        }
    }
}

/// `__unmapself`: the running, detached thread ends, and its stack (which it is
/// running on) is freed once another thread runs.
pub fn exit_and_free_stack(base: usize, len: usize) -> ! {
    with(|t| t.dead_stack = Some((base, len)));
    exit_thread(0)
}

/// `FUTEX_WAKE`: wakes at most `count` threads waiting on `addr` with a bit of
/// `bitset`; returns how many.
pub fn futex_wake(addr: usize, count: u32, bitset: u32) -> i64 {
    with(|t| {
        let mut woken = 0;
        for th in t.list.iter_mut() {
            if woken >= count {
                break;
            }
            if let State::Blocked {
                wait: Wait::Futex { addr: a, bitset: b },
                ..
            } = th.state
                && a == addr
                && b & bitset != 0
            {
                th.state = State::Ready(Wake::Woken);
                woken += 1;
            }
        }
        i64::from(woken)
    })
}

/// `FUTEX_REQUEUE`: wakes `count` waiters of `from`, moves up to `requeue` of the rest
/// to `to`; returns the number woken plus moved.
pub fn futex_requeue(from: usize, count: u32, to: usize, requeue: u32) -> i64 {
    let woken = futex_wake(from, count, u32::MAX);
    let moved = with(|t| {
        let mut moved = 0;
        for th in t.list.iter_mut() {
            if moved >= requeue {
                break;
            }
            if let State::Blocked {
                wait: Wait::Futex { addr, bitset },
                deadline,
            } = th.state
                && addr == from
            {
                th.state = State::Blocked {
                    wait: Wait::Futex { addr: to, bitset },
                    deadline,
                };
                moved += 1;
            }
        }
        i64::from(moved)
    });
    woken + moved
}

/// `FUTEX_WAIT`: if `*addr == expected`, blocks until woken or `deadline` (ns on the
/// monotonic clock); 0, `-EAGAIN` (the value differed) or `-ETIMEDOUT`.
pub fn futex_wait(addr: usize, expected: u32, bitset: u32, deadline: Option<u64>) -> i64 {
    // SAFETY: musl passes the address of a futex word in its own memory; the value is
    // read once, as the kernel does, with nothing able to change it in between (no
    // other thread runs until this one blocks).
    let value = unsafe { (addr as *const u32).read_volatile() };
    if value != expected {
        return -EAGAIN;
    }
    match block(Wait::Futex { addr, bitset }, deadline) {
        Wake::Woken | Wake::Events => 0,
        Wake::Timeout => -ETIMEDOUT,
    }
}

/// `sched_yield`: lets every other runnable thread run once.
pub fn yield_now() {
    let others = with(|t| {
        t.list
            .iter()
            .enumerate()
            .any(|(i, th)| i != t.current && matches!(th.state, State::Runnable | State::Ready(_)))
    });
    if others {
        reschedule();
    }
}

/// Blocks the running thread until `wait` is satisfied or `deadline` (monotonic ns)
/// passes, running the other threads meanwhile.
pub fn block(wait: Wait, deadline: Option<u64>) -> Wake {
    // Written bytes still queued for the stack go before any wait.
    crate::socket::flush();
    with(|t| {
        let cur = t.current;
        t.list[cur].state = State::Blocked { wait, deadline };
    });
    loop {
        wake_due();
        let mine = with(|t| {
            let cur = t.current;
            match t.list[cur].state {
                State::Ready(wake) => {
                    t.list[cur].state = State::Runnable;
                    Some(wake)
                }
                _ => None,
            }
        });
        if let Some(wake) = mine {
            return wake;
        }
        if !reschedule() {
            idle_wait();
        }
    }
}

/// Makes runnable every blocked thread whose deadline passed, and those waiting for
/// the network if it has news.
fn wake_due() {
    let now = now_ns();
    let events = events_pending();
    with(|t| {
        for th in t.list.iter_mut() {
            if let State::Blocked { wait, deadline } = th.state {
                if deadline.is_some_and(|d| now >= d) {
                    th.state = State::Ready(Wake::Timeout);
                } else if wait == Wait::Events && events {
                    th.state = State::Ready(Wake::Events);
                }
            }
        }
    });
}

/// Does the network have news for a thread waiting for events? (Shared words only.)
fn events_pending() -> bool {
    let check = *EVENTS.get().borrow();
    let waiting = with(|t| {
        t.list.iter().any(|th| {
            matches!(
                th.state,
                State::Blocked {
                    wait: Wait::Events,
                    ..
                }
            )
        })
    });
    waiting && check.is_some_and(|c| c())
}

/// Nothing can run: waits until the earliest deadline of a blocked thread or news
/// from the network, serving gate calls meanwhile.
fn idle_wait() {
    let (deadline, any_events, any_blocked) = with(|t| {
        let mut deadline: Option<u64> = None;
        let mut events = false;
        let mut blocked = false;
        for th in &t.list {
            if let State::Blocked { wait, deadline: d } = th.state {
                blocked = true;
                if let Some(d) = d {
                    deadline = Some(deadline.map_or(d, |x: u64| x.min(d)));
                }
                events |= wait == Wait::Events;
            }
        }
        (deadline, events, blocked)
    });
    if !any_blocked {
        return;
    }
    if deadline.is_none() && !any_events {
        panic!("posix: every thread waits on a futex that no thread can wake (deadlock)");
    }
    let check = *EVENTS.get().borrow();
    flexos_kernel::gate::wait_until(|| {
        deadline.is_some_and(|d| now_ns() >= d) || (any_events && check.is_some_and(|c| c()))
    });
}

/// Switches to the next runnable thread after the running one (round robin), if
/// there is one other than it; returns whether a switch happened (and the running
/// thread has run again since).
fn reschedule() -> bool {
    let step = with(|t| {
        let n = t.list.len();
        let cur = t.current;
        let me = t.list[cur].tid;
        let next = (1..=n)
            .map(|k| (cur + k) % n)
            .find(|&i| i != cur && matches!(t.list[i].state, State::Runnable | State::Ready(_)))?;
        t.list[cur].fs = read_fs();
        t.current = next;
        let save = &mut t.list[cur].rsp as *mut usize;
        Some((me, save, t.list[next].rsp, t.list[next].fs))
    });
    let Some((me, save, next_rsp, next_fs)) = step else {
        return false;
    };
    write_fs(next_fs);
    // SAFETY: `save` points at this thread's entry in the list; `switch` stores RSP
    // there before anything else runs (the list may grow, and move, only after that,
    // while this thread is switched out). `next_rsp` is a frame saved by `switch` or
    // built by `spawn`, on a stack that is still allocated.
    unsafe { switch(save, next_rsp) };
    // Back on this thread: free a stack whose thread has left it for good.
    if let Some((base, len)) = with(|t| t.dead_stack.take()) {
        crate::mem::unmap(base, len);
    }
    // Threads that exited never run again: drop them, and find this one's new index.
    with(|t| {
        t.list.retain(|th| th.state != State::Exited);
        t.current = t
            .list
            .iter()
            .position(|th| th.tid == me)
            .expect("the running thread is in the list");
    });
    true
}
