//! `epoll` and `poll`: level-triggered readiness of sockets, pipes and files.
//!
//! Readiness is computed when asked (sockets look at their rings and, for listening
//! sockets, ask the stack once per change of its event word); a wait that finds
//! nothing ready blocks the thread, watching the descriptors it asked about, until
//! the network has news or its timeout passes. `EPOLLET` is served level-triggered,
//! which only adds wake-ups a correct edge-triggered program tolerates;
//! `EPOLLONESHOT` disarms the entry after it is reported.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::fd::{self, Desc, Kind};
use crate::linux::*;
use crate::sched::{self, Wait};
use crate::socket;

/// Longest a waiting thread sleeps before it looks again on its own (a send buffer
/// that drains, which no shared word announces).
const RECHECK_NS: u64 = 10_000_000;

/// An epoll set: descriptor -> (events, data).
#[derive(Default)]
pub struct Epoll {
    interest: BTreeMap<i64, (u32, u64)>,
}

/// `epoll_create1(flags)`.
pub fn create(flags: u64) -> i64 {
    fd::install(
        Kind::Epoll(Epoll::default()),
        O_RDWR,
        flags & O_CLOEXEC != 0,
    )
}

fn with_epoll<R>(epfd: i64, f: impl FnOnce(&mut Epoll) -> Result<R, i64>) -> Result<R, i64> {
    let desc = fd::get(epfd)?;
    let mut open = desc.borrow_mut();
    match &mut open.kind {
        Kind::Epoll(e) => f(e),
        _ => Err(-EINVAL),
    }
}

/// `epoll_ctl(epfd, op, fd, event)`.
pub fn ctl(epfd: i64, op: u64, fd: i64, event: *const EpollEvent) -> i64 {
    if epfd == fd {
        return -EINVAL;
    }
    if let Err(e) = fd::get(fd) {
        return e;
    }
    let ev = if op == EPOLL_CTL_DEL {
        None
    } else if event.is_null() {
        return -EFAULT;
    } else {
        // SAFETY: musl passes the caller's `struct epoll_event`.
        Some(unsafe { event.read_unaligned() })
    };
    with_epoll(epfd, |e| match (op, ev) {
        (EPOLL_CTL_ADD, Some(ev)) => {
            if e.interest.contains_key(&fd) {
                return Err(-EEXIST);
            }
            e.interest.insert(fd, (ev.events, ev.data));
            Ok(0)
        }
        (EPOLL_CTL_MOD, Some(ev)) => match e.interest.get_mut(&fd) {
            Some(slot) => {
                *slot = (ev.events, ev.data);
                Ok(0)
            }
            None => Err(-ENOENT),
        },
        (EPOLL_CTL_DEL, _) => e.interest.remove(&fd).map(|_| 0).ok_or(-ENOENT),
        _ => Err(-EINVAL),
    })
    .unwrap_or_else(|e| e)
}

/// The order key of a ready descriptor: the arrival stamp of a readable stream's
/// oldest bytes, 0 for everything else.
fn arrival(desc: &Desc, have: u32) -> u64 {
    match &desc.borrow().kind {
        Kind::Socket(s) if have & EPOLLIN != 0 => s.arrival(),
        _ => 0,
    }
}

/// The events of `want` that `desc` has now.
pub fn ready(desc: &Desc, want: u32) -> u32 {
    let mut open = desc.borrow_mut();
    let mut have = 0;
    match &mut open.kind {
        Kind::Socket(s) => {
            if want & EPOLLIN != 0 && s.readable() {
                have |= EPOLLIN;
            }
            if want & EPOLLOUT != 0 && s.writable() {
                have |= EPOLLOUT;
            }
        }
        Kind::Pipe(p) => {
            if !p.write && p.readable() {
                have |= EPOLLIN;
            }
            if p.write && p.writable() {
                have |= EPOLLOUT;
            }
        }
        Kind::Console { output: false } => {}
        Kind::Epoll(_) => {}
        _ => have |= EPOLLIN | EPOLLOUT,
    }
    have & (want | EPOLLERR | EPOLLHUP)
}

/// When a wait of `timeout_ms` ends (`None`: never).
fn deadline_of(timeout_ms: i64) -> Option<u64> {
    (timeout_ms >= 0).then(|| flexos_kernel::time::now_ns() + timeout_ms as u64 * 1_000_000)
}

/// What every round of a readiness wait does first: lets threads that can run do so
/// (a background job may be what makes a descriptor ready, and a wait of 0 must still
/// let them progress), hands queued writes to the stack, and runs the stack when it is
/// in this compartment (an app whose descriptors are always ready never sleeps, and
/// its sends must still leave).
fn start_round() {
    sched::yield_now();
    socket::flush();
    flexos_kernel::gate::poll_once();
}

/// `epoll_wait(epfd, events, max, timeout_ms)` (and `epoll_pwait`, the mask ignored).
pub fn wait(epfd: i64, out: *mut EpollEvent, max: i64, timeout_ms: i64) -> i64 {
    if max <= 0 {
        return -EINVAL;
    }
    if out.is_null() {
        return -EFAULT;
    }
    let deadline = deadline_of(timeout_ms);
    loop {
        start_round();
        let interest: Vec<(i64, u32, u64)> = match with_epoll(epfd, |e| {
            Ok(e.interest
                .iter()
                .map(|(&fd, &(ev, data))| (fd, ev, data))
                .collect())
        }) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let mut watched = Vec::new();
        let mut fired = Vec::new();
        for (fd, events, data) in interest {
            let Ok(desc) = fd::get(fd) else {
                continue;
            };
            let have = ready(&desc, events);
            if have != 0 {
                fired.push((arrival(&desc, have), fd, events, have, data));
            }
            if events & EPOLLIN != 0 {
                watched.push(desc);
            }
        }
        // Oldest bytes first, as a kernel's ready list has them (clients that send on
        // two connections in turn expect to be served in that order); the sort is
        // stable, so the rest stay in descriptor order.
        fired.sort_by_key(|f| f.0);
        fired.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        let mut fired_oneshot = Vec::new();
        for (n, &(_, fd, events, have, data)) in fired.iter().enumerate() {
            // SAFETY: the caller's array holds `max` events; `n < max` (truncated).
            unsafe {
                out.add(n)
                    .write_unaligned(EpollEvent { events: have, data })
            };
            if events & EPOLLONESHOT != 0 {
                fired_oneshot.push(fd);
            }
        }
        let n = fired.len();
        if !fired_oneshot.is_empty() {
            let _ = with_epoll(epfd, |e| {
                for fd in &fired_oneshot {
                    if let Some(slot) = e.interest.get_mut(fd) {
                        slot.0 = 0;
                    }
                }
                Ok(())
            });
        }
        let now = flexos_kernel::time::now_ns();
        if n > 0 || timeout_ms == 0 || deadline.is_some_and(|d| now >= d) {
            return n as i64;
        }
        socket::watch(watched);
        let step = now + RECHECK_NS;
        sched::block(Wait::Events, Some(deadline.map_or(step, |d| d.min(step))));
    }
}

/// `poll(fds, n, timeout_ms)` (and `ppoll`).
pub fn poll(fds: *mut Pollfd, n: usize, timeout_ms: i64) -> i64 {
    if fds.is_null() && n > 0 {
        return -EFAULT;
    }
    let deadline = deadline_of(timeout_ms);
    loop {
        start_round();
        let mut count = 0;
        let mut watched = Vec::new();
        for i in 0..n {
            // SAFETY: the caller's array holds `n` pollfds.
            let mut p = unsafe { fds.add(i).read() };
            p.revents = 0;
            if p.fd >= 0 {
                match fd::get(i64::from(p.fd)) {
                    Err(_) => p.revents = POLLNVAL,
                    Ok(desc) => {
                        let mut want = 0;
                        if p.events & POLLIN != 0 {
                            want |= EPOLLIN;
                        }
                        if p.events & POLLOUT != 0 {
                            want |= EPOLLOUT;
                        }
                        let have = ready(&desc, want);
                        if have & EPOLLIN != 0 {
                            p.revents |= POLLIN;
                        }
                        if have & EPOLLOUT != 0 {
                            p.revents |= POLLOUT;
                        }
                        watched.push(desc);
                    }
                }
            }
            if p.revents != 0 {
                count += 1;
            }
            // SAFETY: as above.
            unsafe { fds.add(i).write(p) };
        }
        let now = flexos_kernel::time::now_ns();
        if count > 0 || timeout_ms == 0 || deadline.is_some_and(|d| now >= d) {
            return count;
        }
        socket::watch(watched);
        let step = now + RECHECK_NS;
        sched::block(Wait::Events, Some(deadline.map_or(step, |d| d.min(step))));
    }
}
